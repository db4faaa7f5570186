"""Security headers on every response, and the reference page served without a CDN (issue 13)."""

from __future__ import annotations

import re

import pytest
from litestar import Litestar
from litestar.testing import TestClient

ROUTES = [
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/schema"),
    ("GET", "/schema/swagger"),
    ("GET", "/schema/openapi.json"),
    ("GET", "/schema/openapi.yaml"),
    ("GET", "/schema/reference.css"),
    ("GET", "/api/v1/policies"),
    ("POST", "/api/v1/evaluate"),  # the fast path
    ("POST", "/api/v1/evaluate/batch"),
    ("GET", "/no/such/route"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("authenticated", [True, False])
def test_every_response_carries_the_security_headers(
    client: TestClient[Litestar],
    admin: dict[str, str],
    method: str,
    path: str,
    authenticated: bool,
) -> None:
    headers = admin if authenticated else {}
    r = client.request(method, path, json={"context": {}}, headers=headers)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp
    assert "server" not in r.headers
    assert "x-powered-by" not in r.headers


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
def test_the_reference_page_loads_nothing_from_elsewhere(
    client: TestClient[Litestar], path: str
) -> None:
    """Regression: Litestar's Swagger UI pulled its scripts from cdn.jsdelivr.net."""
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "<script" not in page
    assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none' holds
    links = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert links
    for link in links:
        assert link.startswith("/schema/"), link  # same origin, absolute
        assert client.get(link).status_code == 200, link
    assert "/api/v1/evaluate/batch" in page
    assert "/api/v1/policies/{policy_id}" in page or "/api/v1/policies/{id}" in page
    assert "https://" not in page.replace("https://issuer", "")
