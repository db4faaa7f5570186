"""Every route x {no token, wrong role, right role, expired token, bad signature}."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from policy_core.access import ROLE_PERMISSIONS
from policy_http.testing import bearer, make_token

POLICY = """\
metadata: {id: ID, name: A policy}
rules:
  - id: big-requests
    name: Big requests
    condition: "llm.max_tokens > LIMIT"
    action: {decision: deny, reason: too many tokens}
"""
YAML = {"Content-Type": "application/yaml"}


def policy_yaml(policy_id: str, limit: int = 1000) -> str:
    return POLICY.replace("ID", policy_id).replace("LIMIT", str(limit))


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    permission: str
    wrong_role: str
    right_role: str
    ok: int
    json: Any = None
    yaml: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


ROUTES = [
    Route(
        "POST",
        "/api/v1/policies",
        "policies:write",
        "auditor",
        "policy-admin",
        201,
        yaml=policy_yaml("p2"),
    ),
    Route("GET", "/api/v1/policies", "policies:read", "evaluator", "auditor", 200),
    Route("GET", "/api/v1/policies/p1", "policies:read", "evaluator", "auditor", 200),
    Route(
        "PUT",
        "/api/v1/policies/p1",
        "policies:write",
        "auditor",
        "policy-admin",
        200,
        yaml=policy_yaml("p1", 2000),
        headers=(("If-Match", '"p1:1"'),),
    ),
    Route(
        "PATCH",
        "/api/v1/policies/p1/status",
        "policies:write",
        "evaluator",
        "policy-admin",
        200,
        json={"status": "draft"},
    ),
    Route("DELETE", "/api/v1/policies/p1", "policies:delete", "auditor", "policy-admin", 204),
    Route("GET", "/api/v1/policies/p1/revisions", "policies:read", "evaluator", "auditor", 200),
    Route(
        "POST",
        "/api/v1/policies/p1/rollback",
        "policies:write",
        "auditor",
        "admin",
        200,
        json={"revision": 1},
    ),
    Route(
        "POST",
        "/api/v1/policies/validate",
        "policies:read",
        "evaluator",
        "auditor",
        200,
        yaml=policy_yaml("p9"),
    ),
    Route(
        "POST",
        "/api/v1/evaluate",
        "evaluate",
        "auditor",
        "evaluator",
        200,
        json={"context": {"llm": {"max_tokens": 5}}},
    ),
    Route(
        "POST",
        "/api/v1/evaluate/response",
        "evaluate",
        "auditor",
        "evaluator",
        200,
        json={"context": {}, "response": {"text": "ok"}},
    ),
    Route(
        "POST",
        "/api/v1/evaluate/batch",
        "evaluate",
        "auditor",
        "evaluator",
        200,
        json={"requests": [{"context": {}}, {"context": {"llm": {"max_tokens": 5000}}}]},
    ),
    Route("GET", "/api/v1/evaluate/history", "history:read", "evaluator", "auditor", 200),
    Route("GET", "/api/v1/evaluate/stats", "history:read", "evaluator", "auditor", 200),
    Route(
        "POST",
        "/api/v1/usage",
        "usage:write",
        "auditor",
        "evaluator",
        200,
        json={"key": "team:t1", "usd": 1.5},
    ),
    Route(
        "POST",
        "/api/v1/api-keys",
        "apikeys:manage",
        "policy-admin",
        "admin",
        201,
        json={"name": "gateway", "roles": ["evaluator"]},
    ),
    Route("GET", "/api/v1/api-keys", "apikeys:manage", "policy-admin", "admin", 200),
    Route("DELETE", "/api/v1/api-keys/{key}", "apikeys:manage", "auditor", "admin", 204),
]
IDS = [f"{r.method} {r.path}" for r in ROUTES]


def call(client: TestClient[Litestar], route: Route, auth: dict[str, str], key_id: str = "k"):
    headers = {**auth, **dict(route.headers)}
    kwargs: dict[str, Any] = {}
    if route.yaml is not None:
        kwargs["content"] = route.yaml
        headers.update(YAML)
    elif route.json is not None:
        kwargs["json"] = route.json
    path = route.path.replace("{key}", key_id)
    return client.request(route.method, path, headers=headers, **kwargs)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"].startswith("urn:llm-policy:problem:")
    assert "Traceback" not in response.text
    return body


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_no_token_is_401_with_a_challenge(seeded: TestClient[Litestar], route: Route) -> None:
    response = call(seeded, route, {})
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "authentication required" in body["detail"]


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_wrong_role_is_403(seeded: TestClient[Litestar], route: Route) -> None:
    response = call(seeded, route, bearer(make_token(roles=[route.wrong_role])))
    body = assert_problem(response, 403)
    assert route.permission in body["detail"]


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_expired_token_is_401(seeded: TestClient[Litestar], route: Route) -> None:
    # 60 s past exp is beyond the 30 s leeway.
    token = make_token(roles=[route.right_role], exp_in=-60)
    body = assert_problem(call(seeded, route, bearer(token)), 401)
    assert "expired" in body["detail"]


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_bad_signature_is_401(seeded: TestClient[Litestar], route: Route) -> None:
    token = make_token(roles=["admin"], secret="another-secret-of-sufficient-length-42")
    body = assert_problem(call(seeded, route, bearer(token)), 401)
    assert "signature" in body["detail"]


@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_right_role_succeeds(
    seeded: TestClient[Litestar], admin: dict[str, str], route: Route
) -> None:
    key_id = "k"
    if "{key}" in route.path:
        created = seeded.post(
            "/api/v1/api-keys", json={"name": "old", "roles": ["auditor"]}, headers=admin
        )
        key_id = created.json()["id"]
    response = call(seeded, route, bearer(make_token(roles=[route.right_role])), key_id)
    assert response.status_code == route.ok, response.text
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/schema/openapi.json"])
def test_operations_routes_need_no_token(client: TestClient[Litestar], path: str) -> None:
    assert client.get(path).status_code == 200


def test_every_api_route_is_in_the_matrix(client: TestClient[Litestar]) -> None:
    schema = client.get("/schema/openapi.json").json()
    documented = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1")
        for method in item
    }
    tested = {
        (r.method, r.path.replace("{key}", "{key_id}").replace("p1", "{policy_id}")) for r in ROUTES
    }
    assert documented == tested


ROLES = sorted(ROLE_PERMISSIONS)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", ROUTES, ids=IDS)
def test_role_x_route(seeded: TestClient[Litestar], route: Route, role: str) -> None:
    """Every role on every route: allowed exactly when the roles table grants the permission."""
    response = call(seeded, route, bearer(make_token(roles=[role])))
    if route.permission in ROLE_PERMISSIONS[role]:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403, response.text
        assert route.permission in response.json()["detail"]


def test_every_app_route_is_in_the_matrix_or_open(client: TestClient[Litestar]) -> None:
    """Enumerated from the app itself (not its OpenAPI): a new route needs a matrix entry."""
    app: Litestar = client.app
    open_paths = {"/health", "/ready", "/metrics"}
    served = {
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method not in ("HEAD", "OPTIONS") and route.path.startswith("/api/")
    }
    tested = {
        (r.method, r.path.replace("{key}", "{key_id:str}").replace("p1", "{policy_id:str}"))
        for r in ROUTES
    }
    assert served, "the app's routes were not found"
    assert served - tested == set(), "give each new route a Route entry (and its permission)"
    assert tested - served == set(), "a Route entry names a route the app does not serve"
    assert open_paths <= {route.path for route in app.routes}
