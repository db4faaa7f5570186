"""OpenTelemetry: spans for requests and evaluations when enabled, none otherwise."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from policy_cli.testing import http_app
from policy_http._telemetry import Telemetry
from policy_http.testing import bearer, make_token

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_disabled_without_an_endpoint() -> None:
    telemetry = Telemetry(None, "svc")
    assert telemetry.enabled is False
    with telemetry.request_span("GET /", {}, {}):
        pass
    telemetry.shutdown()


def test_an_endpoint_enables_the_exporter_and_shutdown_flushes() -> None:
    # Nothing listens there; no span was recorded, so shutdown has nothing to send.
    telemetry = Telemetry("http://127.0.0.1:9", "svc")
    assert telemetry.enabled is True
    telemetry.shutdown()


def test_request_and_evaluation_spans_continue_the_callers_trace(monkeypatch: Any) -> None:
    exporter = InMemorySpanExporter()
    real_init = Telemetry.__init__

    def with_memory_exporter(self: Telemetry, endpoint: str | None, name: str, **_: Any) -> None:
        real_init(self, endpoint, name, span_processor=SimpleSpanProcessor(exporter))

    monkeypatch.setattr(Telemetry, "__init__", with_memory_exporter)
    app = http_app()
    headers = {**bearer(make_token()), "traceparent": TRACEPARENT}
    with TestClient(app) as client:
        assert (
            client.post("/api/v1/evaluate", json={"context": {}}, headers=headers).status_code
            == 200
        )
        assert client.get("/api/v1/policies", headers=headers).status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    request = spans["POST /api/v1/evaluate"]
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 200
    assert format(request.context.trace_id, "032x") == TRACEPARENT.split("-")[1]
    evaluation = spans["policy.evaluate"]
    assert evaluation.parent is not None
    assert evaluation.parent.span_id == request.context.span_id
    assert "GET /api/v1/policies" in spans
