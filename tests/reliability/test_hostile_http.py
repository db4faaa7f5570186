"""Hostile bodies over the HTTP API (issue 13): every one a 4xx problem naming the limit.

In process (Litestar's test client over the app `llm-policy serve` builds, on
the memory deployment); the server-level cases (slow headers, idle
connections, RSS) are in test_hostile_server.py. Each test also checks that
the app still answers a plain evaluation afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from litestar import Litestar
from litestar.testing import TestClient
from policy_cli.testing import http_app
from policy_http.testing import bearer, make_token

pytestmark = pytest.mark.reliability

E = "/api/v1/evaluate"
B = "/api/v1/evaluate/batch"
P = "/api/v1/policies"
JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}
POLICY = """\
metadata: {id: p1}
rules:
  - id: big
    condition: "llm.max_tokens > 1000"
    action: {decision: deny, reason: too many tokens}
"""


def _deep_json(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    with TestClient(http_app()) as c:
        admin = bearer(make_token(roles=["admin"]))
        c.headers.update(admin)
        r = c.post(P, content=POLICY, headers=YAML)
        assert r.status_code == 201, r.text
        yield c


def problem(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    text = body["detail"] + " ".join(e["message"] for e in body.get("errors") or [])
    for fragment in fragments:
        assert fragment in text, body
    return body


def still_up(client: TestClient[Litestar]) -> None:
    r = client.post(E, json={"context": {"llm": {"max_tokens": 5000}}})
    assert r.status_code == 200
    assert r.json()["decision"] == "deny"


@pytest.mark.parametrize("depth", [33, 1_000, 10_000, 100_000])
@pytest.mark.parametrize("opener", ["{", "["])
def test_deep_json_contexts_are_422_naming_the_depth_limit(
    client: TestClient[Litestar], depth: int, opener: str
) -> None:
    """Regression: 10,000 levels answered 500 (msgspec's RecursionError)."""
    inner = _deep_json(depth) if opener == "{" else "[" * depth + "]" * depth
    body = '{"context": {"x": ' + inner + "}}"
    problem(client.post(E, content=body, headers=JSON), 422, "deeper than 32 levels")
    batch = '{"requests": [{"context": {"x": ' + inner + "}}]}"
    r = client.post(B, content=batch, headers=JSON)
    if r.status_code == 200:  # decoded: the item's own error entry
        (entry,) = r.json()["decisions"]
        assert entry["kind"] == "error"
        assert entry["status"] == 422
        assert "deeper than 32 levels" in entry["error"]
    else:  # too deep to decode at all: the whole body's problem
        problem(r, 422, "deeper than 32 levels")
    still_up(client)


def test_deep_json_through_a_structured_json_type_is_a_4xx(client: TestClient[Litestar]) -> None:
    """The Litestar handler (not the fast path) decodes `+json` types: no 500 there either."""
    body = '{"context": {"x": ' + _deep_json(10_000) + "}}"
    r = client.post(E, content=body, headers={"Content-Type": "application/vnd.x+json"})
    assert 400 <= r.status_code < 500, r.text
    assert "deeper than" in r.json()["detail"]
    still_up(client)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"context": {"a": "\xff\xfe"}}',
        b'{"context": {"\xc3\x28": 1}}',
        b'{"context": {"a": "\xed\xa0\x80"}}',  # an encoded surrogate
        b'{"context": {"a": "ok"}, "request_id": "\xe2\x82"}',
    ],
)
@pytest.mark.parametrize("path", [E, B])
def test_invalid_utf8_is_400_naming_utf8(
    client: TestClient[Litestar], raw: bytes, path: str
) -> None:
    """Regression: invalid UTF-8 in a JSON string answered 500."""
    if path == B:
        raw = b'{"requests": [' + raw + b"]}"
    problem(client.post(path, content=raw, headers=JSON), 400, "UTF-8")
    still_up(client)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("NaN", "malformed JSON"), ("Infinity", "malformed JSON"), ("-Infinity", "malformed JSON"),
     ("1e1000", "out of range"), ("-1e1000", "out of range"), ("1" * 5000, "")],
)  # fmt: skip
def test_non_finite_and_huge_numbers_are_400(
    client: TestClient[Litestar], value: str, fragment: str
) -> None:
    r = client.post(E, content='{"context": {"a": ' + value + "}}", headers=JSON)
    if value.startswith("1111"):
        # A 5,000-digit integer is valid JSON: msgspec refuses integers beyond 64 bits.
        assert r.status_code in (200, 400), r.text
    else:
        problem(r, 400, fragment)
    still_up(client)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                     "multipart/form-data; boundary=x", "application/yaml"],
)  # fmt: skip
def test_wrong_content_types_on_evaluate_are_415(
    client: TestClient[Litestar], content_type: str
) -> None:
    for path in (E, B):
        r = client.post(path, content='{"context": {}}', headers={"Content-Type": content_type})
        problem(r, 415, "application/json")
    still_up(client)


def test_wrong_content_type_on_policies_is_415(client: TestClient[Litestar]) -> None:
    r = client.post(P, content=POLICY, headers={"Content-Type": "text/plain"})
    problem(r, 415, "application/json", "application/yaml")


def test_very_long_strings_and_keys_within_the_body_limit_are_answered(
    client: TestClient[Litestar],
) -> None:
    long = "x" * 900_000
    r = client.post(E, json={"context": {"prompt": long}})
    assert r.status_code == 200
    r = client.post(E, json={"context": {long: 1}})
    assert r.status_code == 200
    # Past the body limit (1 MiB by default): 413 naming the limit, before reading it all.
    problem(client.post(E, json={"context": {"k" * 2_000_000: 1}}), 413, "1048576 bytes")
    problem(client.post(E, json={"context": {"k": "v" * 2_000_000}}), 413, "1048576 bytes")
    still_up(client)


def test_too_many_items_are_422_naming_the_limit(client: TestClient[Litestar]) -> None:
    body = {"context": {"a": list(range(20_000))}}
    problem(client.post(E, json=body), 422, "more than 10000 keys and values")


def test_duplicate_keys_in_a_context_keep_the_last_value(client: TestClient[Litestar]) -> None:
    """RFC 8259 leaves duplicates to the parser; msgspec (like Python's json) keeps the last."""
    r = client.post(E, content='{"context": {"llm": {"max_tokens": 5, "max_tokens": 5000}}}')
    assert r.json()["decision"] == "deny"


def test_truncated_and_empty_json_is_400(client: TestClient[Litestar]) -> None:
    for body in ('{"context": {"a": ', "", "{", '{"context"'):
        problem(client.post(E, content=body, headers=JSON), 400, "malformed JSON")
    still_up(client)


_BOMB = "".join(
    [
        "metadata:\n  id: bomb\n",
        "  description: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
        *(f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)),
        "rules: []\n",
    ]
)


@pytest.mark.parametrize("route", [P, "/api/v1/policies/validate"])
def test_a_yaml_alias_bomb_is_refused_naming_the_value_limit(
    client: TestClient[Litestar], route: str
) -> None:
    """10^9 values once expanded: refused from the parsed tree, counting each alias use."""
    r = client.post(route, content=_BOMB, headers=YAML)
    problem(r, 422, "more than 20000 keys and values", "alias")
    still_up(client)


@pytest.mark.parametrize("depth", [150, 10_000])
def test_deep_yaml_and_json_policy_documents_are_400_naming_the_depth_limit(
    client: TestClient[Litestar], depth: int
) -> None:
    yaml_doc = "metadata: {id: deep}\nrules: []\nx: " + "[" * depth + "]" * depth + "\n"
    problem(client.post(P, content=yaml_doc, headers=YAML), 400, "at most 100 levels")
    json_doc = '{"metadata": {"id": "deep"}, "rules": [], "x": ' + _deep_json(depth) + "}"
    problem(client.post(P, content=json_doc, headers=JSON), 400, "at most 100 levels")
    still_up(client)


def test_invalid_utf8_policy_is_400(client: TestClient[Litestar]) -> None:
    r = client.post(P, content=b"metadata: {id: \xff}\nrules: []\n", headers=YAML)
    problem(r, 400, "UTF-8")


def test_duplicate_keys_in_a_policy_are_a_load_error(client: TestClient[Litestar]) -> None:
    doc = "metadata: {id: dup}\nmetadata: {id: dup2}\nrules: []\n"
    r = client.post(P, content=doc, headers=YAML)
    assert r.status_code in (400, 422), r.text
    assert "duplicate" in r.text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_give_a_server_error(
    client: TestClient[Litestar], raw: bytes
) -> None:
    for path in (E, B):
        r = client.post(path, content=raw, headers=JSON)
        assert r.status_code < 500, (raw, r.text)
    r = client.post(P, content=raw, headers=YAML)
    assert r.status_code < 500, (raw, r.text)
