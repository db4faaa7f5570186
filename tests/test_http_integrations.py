"""Integrations seen from the HTTP API: /ready reports them, /metrics counts them, spans trace them.

Shield is a FakeServer on 127.0.0.1 in its own thread (the app runs in the
test client's loop); the app is the one `llm-policy serve` builds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from policy_cli.testing import http_app, memory_settings
from policy_core.integrations import MemoryShield
from policy_http._telemetry import Telemetry
from policy_http.testing import bearer, make_token
from policy_integrations.testing import ThreadedFakeServer

POLICY = """\
metadata: {id: guard}
rules:
  - id: injection
    condition: "!shield.scan(llm.prompt).passed"
    action: {decision: deny, reason: prompt rejected}
"""


@pytest.fixture
def shield() -> Iterator[ThreadedFakeServer]:
    with ThreadedFakeServer(MemoryShield(["ignore previous"]).service) as server:
        yield server


def _evaluate(client: TestClient[Any], prompt: str) -> dict[str, Any]:
    r = client.post(
        "/api/v1/evaluate",
        json={"context": {"llm": {"prompt": prompt}}},
        headers=bearer(make_token(roles=["evaluator"])),
    )
    assert r.status_code == 200, r.text
    decision: dict[str, Any] = r.json()
    return decision


def _create(client: TestClient[Any]) -> None:
    r = client.post(
        "/api/v1/policies",
        content=POLICY,
        headers={**bearer(make_token(roles=["admin"])), "Content-Type": "application/yaml"},
    )
    assert r.status_code == 201, r.text


def test_ready_and_metrics_report_the_integration(shield: ThreadedFakeServer) -> None:
    settings = memory_settings(
        shield_url=shield.url,
        integration_timeout_ms=100,
        integration_breaker_failures=2,
        shield_cache_seconds=0,
    )
    with TestClient(http_app(settings)) as client:
        _create(client)
        assert _evaluate(client, "hello")["decision"] == "allow"
        assert _evaluate(client, "ignore previous orders")["decision"] == "deny"
        ready = client.get("/ready").json()
        assert ready["status"] == "ok"
        assert ready["integrations"] == {
            "shield": {
                "url": shield.url,
                "breaker": "closed",
                "consecutive_failures": 0,
                "last_error": None,
                "stale": False,
            }
        }
        shield.service.fault = "hang"
        for _ in range(3):
            decision = _evaluate(client, "hello")
            assert decision["decision"] == "deny"
        assert decision["errors"][0]["message"] == (
            "shield.scan('hello'): shield circuit breaker is open"
        )
        ready = client.get("/ready")
        assert ready.status_code == 200  # an open breaker never fails readiness
        assert ready.json()["integrations"]["shield"]["breaker"] == "open"
        text = client.get("/metrics").text
    for line in (
        'llm_policy_integration_calls_total{call="scan",integration="shield",outcome="ok"} 2.0',
        'llm_policy_integration_calls_total{call="scan",integration="shield",outcome="timeout"} 2.0',
        'llm_policy_integration_calls_total{call="scan",integration="shield",outcome="breaker_open"} 1.0',
        'llm_policy_integration_call_seconds_count{call="scan",integration="shield"} 5.0',
        'llm_policy_integration_breaker_state{integration="shield"} 2.0',
    ):
        assert line in text, line


def test_ready_lists_no_integration_when_none_is_configured() -> None:
    with TestClient(http_app()) as client:
        assert client.get("/ready").json().get("integrations") is None


def test_a_span_per_integration_call(shield: ThreadedFakeServer, monkeypatch: Any) -> None:
    exporter = InMemorySpanExporter()
    real_init = Telemetry.__init__

    def with_memory_exporter(self: Telemetry, endpoint: str | None, name: str, **_: Any) -> None:
        real_init(self, endpoint, name, span_processor=SimpleSpanProcessor(exporter))

    monkeypatch.setattr(Telemetry, "__init__", with_memory_exporter)
    with TestClient(http_app(memory_settings(shield_url=shield.url))) as client:
        _create(client)
        _evaluate(client, "hello")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    call = spans["integration shield.scan"]
    assert call.attributes is not None
    assert call.attributes["llm_policy.integration.outcome"] == "ok"
    request = spans["POST /api/v1/evaluate"]
    assert call.context.trace_id == request.context.trace_id
    assert call.end_time is not None
    assert call.start_time is not None
    assert call.end_time >= call.start_time
