"""The fast path and Litestar's handler answer the same requests the same way."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

FAST = "application/json"
SLOW = "application/vnd.llm-policy+json"  # declined by the fast path: Litestar answers
DEEP: dict[str, Any] = {}
_node = DEEP
for _ in range(40):
    _node["a"] = {}
    _node = _node["a"]

PAYLOADS = [
    {"context": {"llm": {"max_tokens": 5000}}, "request_id": "same"},
    {"context": {}, "trace": True, "request_id": "same"},
    {"context": {}, "policies": ["zz"]},
    {"context": {}, "trace": "yes"},
    {"context": {}, "unknown": 1},
    {"context": []},
    {"context": DEEP},
    {"requests": []},
    {
        "requests": [
            {"context": {"llm": {"max_tokens": 5000}}, "request_id": "b1"},
            {"context": {}, "trace": True, "request_id": "b2"},
            {"context": {}, "namespace": "nowhere", "request_id": "b3"},
        ]
    },
    {"requests": [{"context": {}, "policies": ["zz"]}]},
    {"requests": [{"context": []}]},
]


def _post(client: TestClient[Litestar], payload: Any, content_type: str, admin: Any) -> Any:
    path = "/api/v1/evaluate/batch" if "requests" in payload else "/api/v1/evaluate"
    headers = {**admin, "Content-Type": content_type}
    return client.post(path, content=json.dumps(payload), headers=headers)


def _strip(body: Any) -> Any:
    for key in ("evaluation_time_ms", "instance", "request_id", "cached", "detail", "errors"):
        body.pop(key, None)
    if isinstance(body.get("trace"), list):
        body["trace"] = len(body["trace"])
    for decision in body.get("decisions") or ():  # a batch: each of its decisions
        _strip(decision)
    return body


def _comparable(response: Any) -> tuple[int, Any]:
    return response.status_code, _strip(response.json())


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_same_status_and_body(
    seeded: TestClient[Litestar], admin: dict[str, str], payload: Any
) -> None:
    fast = _post(seeded, payload, FAST, admin)
    slow = _post(seeded, payload, SLOW, admin)
    assert _comparable(fast) == _comparable(slow)
    assert fast.headers["content-type"] == slow.headers["content-type"]
