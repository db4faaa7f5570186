"""OpenTelemetry spans: exported over OTLP/HTTP when an endpoint is configured, else none.

The app owns its tracer provider (no global side effect) and shuts it down,
flushing pending spans, when the app stops. Without an endpoint no span is
even created: the hot path checks one boolean.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["Telemetry"]


class _HeaderGetter(Getter[Mapping[str, str]]):
    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if value is not None else None

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


_getter = _HeaderGetter()
_propagator = TraceContextTextMapPropagator()


class _IntegrationSpans:
    """One client span per integration call, as it ends (its start time kept exact).

    Called inside the request's task, so the span is a child of the request's.
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def call(
        self,
        integration: str,
        call: str,
        outcome: str,
        started_ns: int,
        seconds: float,
        error: str | None,
    ) -> None:
        span = self._tracer.start_span(
            f"integration {integration}.{call}",
            kind=trace.SpanKind.CLIENT,
            start_time=started_ns,
            attributes={
                "llm_policy.integration": integration,
                "llm_policy.integration.call": call,
                "llm_policy.integration.outcome": outcome,
            },
        )
        if error is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, error))
        span.end(end_time=started_ns + int(seconds * 1e9))

    def breaker(self, integration: str, state: str) -> None:
        return None


class Telemetry:
    """A tracer, real when an OTLP endpoint is given, absent otherwise."""

    def __init__(
        self, endpoint: str | None, service_name: str, *, span_processor: Any = None
    ) -> None:
        self.enabled = bool(endpoint) or span_processor is not None
        self._provider: Any = None
        self._tracer: trace.Tracer = trace.NoOpTracer()
        if span_processor is not None:  # tests: an in-memory exporter
            from opentelemetry.sdk.trace import TracerProvider

            self._provider = TracerProvider()
            self._provider.add_span_processor(span_processor)
            self._tracer = self._provider.get_tracer("policy_http")
        elif endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
            target = endpoint.rstrip("/")
            if not target.endswith("/v1/traces"):
                target += "/v1/traces"
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=target)))
            self._provider = provider
            self._tracer = provider.get_tracer("policy_http")

    @property
    def tracer(self) -> trace.Tracer:
        return self._tracer

    def request_span(
        self, name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]
    ) -> Any:
        """A server span continuing the caller's W3C trace context (a no-op when disabled)."""
        if not self.enabled:
            return nullcontext()
        parent = _propagator.extract(headers, getter=_getter)
        return self._tracer.start_as_current_span(
            name, context=parent, kind=trace.SpanKind.SERVER, attributes=dict(attributes)
        )

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[None]:
        """An internal span (evaluation, store call); nothing when disabled."""
        if not self.enabled:
            yield
            return
        with self._tracer.start_as_current_span(name, attributes=attributes):
            yield

    def integration_spans(self) -> _IntegrationSpans:
        """A CallObserver (policy_core.integrations) making one span per integration call."""
        return _IntegrationSpans(self._tracer)

    def shutdown(self) -> None:
        """Flush and stop the exporter."""
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
