"""Evaluation routes: decisions, request ids, batch order, limits, history and stats."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from .conftest import YAML, policy_yaml

E = "/api/v1/evaluate"
BIG = {"llm": {"max_tokens": 5000}}
SMALL = {"llm": {"max_tokens": 5}}


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_a_decision_has_the_language_shape_plus_request_id_and_cached(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    r = seeded.post(E, json={"context": BIG}, headers=admin)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["decision"] == "deny"
    assert body["allowed"] is False
    assert body["reason"] == "too many tokens"
    assert body["matched_rules"] == ["p1/big-requests"]
    assert body["policy_set"].startswith("sha256:")
    assert body["cached"] is False
    assert body["request_id"] == r.headers["x-request-id"]
    expected = {
        "decision", "allowed", "reason", "matched_policies", "matched_rules",
        "matched_exceptions", "warnings", "modifications", "obligations", "metadata",
        "errors", "shadow", "policy_set", "evaluation_time_ms", "trace", "reservation", "request_id", "cached",
    }  # fmt: skip
    assert set(body) == expected


def test_request_ids_from_the_body_or_the_header(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    r = seeded.post(E, json={"context": SMALL, "request_id": "req-42"}, headers=admin)
    assert r.json()["request_id"] == "req-42"
    r = seeded.post(E, json={"context": SMALL}, headers={**admin, "X-Request-ID": "trace-7"})
    assert r.headers["x-request-id"] == "trace-7"
    assert r.json()["request_id"] == "trace-7"
    # An unsafe incoming id is replaced, not echoed.
    r = seeded.post(E, json={"context": SMALL}, headers={**admin, "X-Request-ID": "a b<c>"})
    assert r.headers["x-request-id"] != "a b<c>"


def test_the_cache_answers_a_repeated_request(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    seeded.post(E, json={"context": BIG}, headers=admin)
    again = seeded.post(E, json={"context": BIG}, headers=admin).json()
    assert again["cached"] is True
    assert again["decision"] == "deny"


def test_trace_and_dry_run(seeded: TestClient[Litestar], admin: dict[str, str], built: Any) -> None:
    body = seeded.post(E, json={"context": BIG, "trace": True}, headers=admin).json()
    assert body["trace"][0]["rule"] == "big-requests"
    before = len(built.log)
    dry = seeded.post(E, json={"context": BIG, "dry_run": True}, headers=admin).json()
    assert dry["decision"] == "deny"
    assert len(built.log) == before


def test_policies_and_namespace_select(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    r = seeded.post(E, json={"context": BIG, "namespace": "other"}, headers=admin)
    assert r.json()["decision"] == "allow"
    r = seeded.post(E, json={"context": BIG, "policies": ["p1"]}, headers=admin)
    assert r.json()["decision"] == "deny"
    body = problem(seeded.post(E, json={"context": BIG, "policies": ["zz"]}, headers=admin), 404)
    assert "zz" in body["detail"]


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({}, "context"),
        ({"context": []}, "$.context"),
        ({"context": {}, "trace": "yes"}, "$.trace"),
        ({"context": {}, "unknown": 1}, "unknown"),
        ({"context": {}, "request_id": "has space"}, "$.request_id"),
        ({"context": {}, "policies": ["bad id!"]}, "$.policies[0]"),
    ],
)
def test_malformed_requests_are_400_with_the_path(
    seeded: TestClient[Litestar], admin: dict[str, str], payload: dict[str, Any], where: str
) -> None:
    body = problem(seeded.post(E, json=payload, headers=admin), 400)
    assert where in json.dumps(body["errors"])


def test_malformed_json_is_400(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    r = seeded.post(
        E, content=b'{"context": {', headers={**admin, "Content-Type": "application/json"}
    )
    assert "malformed JSON" in problem(r, 400)["detail"]


def test_deep_context_is_422(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    body = problem(seeded.post(E, json={"context": deep}, headers=admin), 422)
    assert "deeper than 32" in body["detail"]


def test_huge_context_is_422(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    wide = {"tags": list(range(20_000))}
    body = problem(seeded.post(E, json={"context": wide}, headers=admin), 422)
    assert "10000" in body["detail"]


def test_body_over_the_limit_is_413(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    payload = {"context": {"llm": {"prompt": "x" * 1_100_000}}}
    problem(seeded.post(E, json=payload, headers=admin), 413)
    batch = {"requests": [{"context": {"p": "x" * 600_000}}] * 2}
    problem(seeded.post(f"{E}/batch", json=batch, headers=admin), 413)


def test_a_non_json_content_type_takes_the_litestar_route(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    # Not the fast path: Litestar's handler answers (and checks the same limits).
    r = seeded.post(
        E,
        content=json.dumps({"context": BIG}),
        headers={**admin, "Content-Type": "application/vnd.custom+json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "deny"
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_batch_answers_in_order(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    requests = [{"context": BIG if i % 3 == 0 else SMALL, "request_id": f"r{i}"} for i in range(30)]
    r = seeded.post(f"{E}/batch", json={"requests": requests}, headers=admin)
    assert r.status_code == 200
    decisions = r.json()["decisions"]
    assert [d["request_id"] for d in decisions] == [f"r{i}" for i in range(30)]
    assert [d["decision"] for d in decisions] == [
        "deny" if i % 3 == 0 else "allow" for i in range(30)
    ]


def test_batch_limits(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    too_many = {"requests": [{"context": {}}] * 1001}
    problem(seeded.post(f"{E}/batch", json=too_many, headers=admin), 400)
    problem(seeded.post(f"{E}/batch", json={"requests": []}, headers=admin), 400)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    # A context beyond the limits is that request's error entry, not the batch's.
    mixed = {"requests": [{"context": {}}, {"context": deep, "request_id": "deep-1"}]}
    r = seeded.post(f"{E}/batch", json=mixed, headers=admin)
    assert r.status_code == 200
    first, second = r.json()["decisions"]
    assert first["kind"] == "decision"
    assert second == {
        "kind": "error",
        "index": 1,
        "request_id": "deep-1",
        "status": 422,
        "type": "urn:llm-policy:problem:context_too_large",
        "error": "the context nests deeper than 32 levels",
    }


def test_a_bad_batch_item_gets_its_own_error_and_the_others_their_decisions(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    """Regression (issue 13): one unknown policy id failed the whole batch with a 404."""
    batch = {
        "requests": [
            {"context": BIG, "request_id": "ok-1"},
            {"context": BIG, "policies": ["nope"], "request_id": "bad-1"},
            {"context": SMALL, "policies": ["p1"]},
            {"context": SMALL, "policies": ["p1", "gone"]},
        ]
    }
    r = seeded.post(f"{E}/batch", json=batch, headers=admin)
    assert r.status_code == 200, r.text
    decisions = r.json()["decisions"]
    assert [d["kind"] for d in decisions] == ["decision", "error", "decision", "error"]
    assert decisions[0]["decision"] == "deny"
    assert decisions[0]["request_id"] == "ok-1"
    assert decisions[2]["decision"] == "allow"
    bad = decisions[1]
    assert bad["index"] == 1
    assert bad["request_id"] == "bad-1"
    assert bad["status"] == 404
    assert bad["type"] == "urn:llm-policy:problem:policy_not_found"
    assert "'nope'" in bad["error"]
    assert decisions[3]["index"] == 3
    assert "request_id" not in decisions[3]
    assert "'gone'" in decisions[3]["error"]
    # The same through the Litestar handler (a structured JSON type): the same entries.
    slow = seeded.post(
        f"{E}/batch",
        content=json.dumps(batch),
        headers={**admin, "Content-Type": "application/vnd.llm-policy+json"},
    )
    assert [d["kind"] for d in slow.json()["decisions"]] == [
        "decision",
        "error",
        "decision",
        "error",
    ]


def test_history_filters_and_stats(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    seeded.post(E, json={"context": BIG, "request_id": "d-1"}, headers=admin)
    seeded.post(E, json={"context": SMALL, "request_id": "a-1"}, headers=admin)
    items = seeded.get(f"{E}/history", headers=admin).json()["items"]
    assert {i["request_id"] for i in items} >= {"d-1", "a-1"}
    denied = seeded.get(f"{E}/history", params={"decision": "deny"}, headers=admin).json()
    assert [i["request_id"] for i in denied["items"]] == ["d-1"]
    assert denied["items"][0]["matched_rules"] == ["p1/big-requests"]
    by_policy = seeded.get(f"{E}/history", params={"policy_id": "p1"}, headers=admin).json()
    assert [i["request_id"] for i in by_policy["items"]] == ["d-1"]
    one = seeded.get(f"{E}/history", params={"request_id": "a-1"}, headers=admin).json()
    assert one["items"][0]["decision"] == "allow"
    later = seeded.get(
        f"{E}/history", params={"since": "2999-01-01T00:00:00Z"}, headers=admin
    ).json()
    assert later["items"] == []
    page = seeded.get(f"{E}/history", params={"limit": 1}, headers=admin).json()
    assert len(page["items"]) == 1
    assert page["next_cursor"]
    stats = seeded.get(f"{E}/stats", params={"days": 7}, headers=admin).json()
    assert stats["total"] >= 2
    assert stats["by_decision"]["deny"] >= 1
    assert stats["by_rule"]["p1/big-requests"] >= 1
    assert "p50" in stats["latency_ms"]


def test_history_returns_the_shadow_and_filters_where_it_differs(
    seeded: TestClient[Litestar], admin: dict[str, str]
) -> None:
    # A draft stricter than p1 (deny above 10 tokens) runs in shadow.
    draft = "status: draft\n" + policy_yaml("stricter", limit=10)
    r = seeded.post("/api/v1/policies", content=draft, headers={**admin, **YAML})
    assert r.status_code == 201, r.text
    for request_id, tokens in (("both-deny", 5000), ("draft-denies", 50), ("both-allow", 5)):
        context = {"llm": {"max_tokens": tokens}}
        seeded.post(E, json={"context": context, "request_id": request_id}, headers=admin)
    everything = seeded.get(f"{E}/history", headers=admin).json()["items"]
    by_id = {i["request_id"]: i for i in everything}
    assert set(by_id) == {"both-deny", "draft-denies", "both-allow"}
    differs = by_id["draft-denies"]
    assert differs["decision"] == "allow"
    assert differs["shadow"]["decision"] == "deny"
    assert differs["shadow"]["matched_rules"] == ["stricter/big-requests"]
    assert differs["obligations"] == []
    assert differs["errors"] == []
    assert by_id["both-allow"]["shadow"]["decision"] == "allow"
    only = seeded.get(f"{E}/history", params={"shadow_differs": "true"}, headers=admin).json()
    assert [i["request_id"] for i in only["items"]] == ["draft-denies"]
    none = seeded.get(
        f"{E}/history", params={"shadow_differs": "true", "decision": "deny"}, headers=admin
    ).json()
    assert none["items"] == []


def test_history_returns_obligations_and_errors(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    document = """\
metadata: {id: audited}
rules:
  - id: ratio
    condition: "llm.max_tokens / user.quota > 0.5"
    action: {decision: warn, reason: large share}
  - id: log-all
    condition: "true"
    action: {decision: allow}
    obligations: [{type: log, level: info}]
"""
    r = client.post("/api/v1/policies", content=document, headers={**admin, **YAML})
    assert r.status_code == 201, r.text
    context = {"llm": {"max_tokens": 10}, "user": {"quota": 0}}
    decided = client.post(E, json={"context": context, "request_id": "ob-1"}, headers=admin).json()
    item = client.get(f"{E}/history", params={"request_id": "ob-1"}, headers=admin).json()
    (record,) = item["items"]
    assert record["obligations"] == decided["obligations"] != []
    assert record["errors"] == decided["errors"] != []
    assert record["shadow"] is None


@pytest.mark.parametrize(
    "params",
    [{"decision": "maybe"}, {"since": "yesterday"}, {"limit": 0}, {"cursor": "W10"}],
)
def test_history_rejects_bad_queries(
    seeded: TestClient[Litestar], admin: dict[str, str], params: dict[str, Any]
) -> None:
    problem(seeded.get(f"{E}/history", params=params, headers=admin), 400)


def test_stats_days_is_bounded(seeded: TestClient[Litestar], admin: dict[str, str]) -> None:
    problem(seeded.get(f"{E}/stats", params={"days": 0}, headers=admin), 400)
    problem(seeded.get(f"{E}/stats", params={"days": 400}, headers=admin), 400)


def test_usage_records_spend_for_budget_facts(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    policy = """\
metadata: {id: budget, name: Budget}
rules:
  - id: over
    name: Over budget
    condition: 'budget.spent("team:" + team.id, "day") > 10'
    action: {decision: deny, reason: over budget}
"""
    client.post(
        "/api/v1/policies", content=policy, headers={**admin, "Content-Type": "application/yaml"}
    )
    ctx = {"team": {"id": "t1"}}
    assert client.post(E, json={"context": ctx}, headers=admin).json()["decision"] == "allow"
    r = client.post("/api/v1/usage", json={"key": "team:t1", "usd": 12.5}, headers=admin)
    assert r.status_code == 200
    assert r.json() == {"key": "team:t1", "usd": 12.5, "reservation": None, "keys": ["team:t1"]}
    assert client.post(E, json={"context": ctx}, headers=admin).json()["decision"] == "deny"
    problem(client.post("/api/v1/usage", json={"key": "k", "usd": -1}, headers=admin), 400)
    naive = {"key": "k", "usd": 1, "at": "2026-01-01T00:00:00"}
    problem(client.post("/api/v1/usage", json=naive, headers=admin), 422)


def test_usage_settles_a_reservation_by_its_id(
    client: TestClient[Litestar], admin: dict[str, str]
) -> None:
    policy = """\
metadata: {id: cap, name: Cap}
rules:
  - id: over
    condition: "budget.spent(user.id, 'day') + llm.estimated_cost > 3"
    action: {decision: deny, reason: over budget}
"""
    client.post(
        "/api/v1/policies", content=policy, headers={**admin, "Content-Type": "application/yaml"}
    )
    ctx = {"user": {"id": "u7"}, "llm": {"estimated_cost": 2.0}}
    first = client.post(E, json={"context": ctx}, headers=admin).json()
    assert first["decision"] == "allow"
    held = first["reservation"]
    assert held["amount"] == 2.0
    assert held["keys"] == ["u7"]
    assert held["expires_at"].endswith("Z")
    second = client.post(E, json={"context": ctx}, headers=admin).json()
    assert second["decision"] == "deny"  # 2 held + 2 > 3
    assert second["reservation"] is None
    dry = client.post(E, json={"context": ctx, "dry_run": True}, headers=admin).json()
    assert dry["reservation"] is None
    r = client.post("/api/v1/usage", json={"reservation": held["id"], "usd": 0.5}, headers=admin)
    assert r.status_code == 200
    assert r.json() == {"key": None, "usd": 0.5, "reservation": held["id"], "keys": ["u7"]}
    assert client.post(E, json={"context": ctx}, headers=admin).json()["decision"] == "allow"
    again = client.post(
        "/api/v1/usage", json={"reservation": held["id"], "usd": 0.5}, headers=admin
    )
    assert problem(again, 404)["type"].endswith("reservation_not_found")
    both = {"reservation": held["id"], "key": "u7", "usd": 1}
    problem(client.post("/api/v1/usage", json=both, headers=admin), 422)
    problem(client.post("/api/v1/usage", json={"usd": 1}, headers=admin), 422)
    late = {"reservation": "x", "usd": 1, "at": "2026-01-01T00:00:00Z"}
    problem(client.post("/api/v1/usage", json=late, headers=admin), 422)
