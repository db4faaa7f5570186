"""What the routes share: the services (with their authenticator) and this app's limits, metrics and tracer."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from policy_core.ports import Authenticator, RateLimiter
from policy_core.services import (
    ApiKeyService,
    DecisionHistoryService,
    EngineHolder,
    EvaluationService,
    PolicyService,
    UsageService,
)

from policy_http._metrics import Metrics
from policy_http._problems import ApiProblem
from policy_http._ratelimit import RateLimits
from policy_http._telemetry import Telemetry
from policy_http.settings import HttpSettings

__all__ = ["HttpServices", "Runtime", "ServicesFactory"]


class HttpServices(Protocol):
    """What the HTTP API needs from the composition root: services, never adapters."""

    @property
    def policies(self) -> PolicyService: ...

    @property
    def evaluation(self) -> EvaluationService: ...

    @property
    def usage(self) -> UsageService | None: ...

    @property
    def api_keys(self) -> ApiKeyService | None: ...

    @property
    def decisions(self) -> DecisionHistoryService | None: ...

    @property
    def holder(self) -> EngineHolder: ...

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """Request limits per route class and principal (None: nothing is limited)."""
        ...

    @property
    def authenticator(self) -> Authenticator:
        """Verifies bearer tokens and API keys (built by the composition root)."""
        ...

    async def ready(self) -> bool:
        """True once the backing services answer and a policy set is loaded."""
        ...


#: Builds the services inside the worker's event loop and closes them at shutdown
#: (flushing the decision log): what `--workers N` servers need.
ServicesFactory = Callable[[], AbstractAsyncContextManager[HttpServices]]


class Runtime:
    """Per-app state, built by `create_app`; `services` is set before the first request."""

    def __init__(self, settings: HttpSettings, services: HttpServices | None) -> None:
        self.settings = settings
        self._services = services
        # None until the services are bound: the gatekeeper then answers 503.
        self.authenticator: Authenticator | None = (
            services.authenticator if services is not None else None
        )
        self.limits = RateLimits(services.rate_limiter if services is not None else None)
        self.telemetry = Telemetry(settings.otlp_endpoint, settings.service_name)
        self.metrics = Metrics(
            self._snapshot,
            multiprocess_dir=settings.metrics_multiprocess_dir,
            integrations=self._integration_stats,
        )
        if services is not None:
            self._listen_integrations(services)

    @property
    def services(self) -> HttpServices:
        if self._services is None:
            raise ApiProblem(503, "the server is starting; retry shortly", code="starting")
        return self._services

    @property
    def integrations(self) -> Any:
        """The services' IntegrationSet (policy_core.integrations), None when they have none."""
        return getattr(self._services, "integrations", None)

    def _integration_stats(self) -> Any:
        integrations = self.integrations
        return integrations.stats if integrations is not None else None

    def _listen_integrations(self, services: HttpServices) -> None:
        """A span per integration call, when tracing is on."""
        integrations = getattr(services, "integrations", None)
        if integrations is not None and self.telemetry.enabled:
            integrations.stats.listen(self.telemetry.integration_spans())

    def bind(self, services: HttpServices) -> None:
        """Attach services built at startup (factory mode)."""
        self._services = services
        self._listen_integrations(services)
        self.authenticator = services.authenticator
        self.limits.limiter = services.rate_limiter

    def _snapshot(self) -> dict[str, Any]:
        services = self._services
        if services is None:
            return {}
        holder = services.holder
        engine = holder.current
        values: dict[str, Any] = {
            "policy_set": engine.policy_set(),
            "policies_loaded": len(engine.policies),
            "policy_set_version": holder.generation,
        }
        if services.decisions is not None:
            counters = services.decisions.counters()
            values["decision_log_queue_depth"] = counters.queued
            values["decision_log_spool_bytes"] = counters.spool_bytes
            oldest = counters.spool_oldest
            values["decision_log_spool_oldest_age_seconds"] = (
                0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
            )
            values["decision_log_records"] = {
                "appended": counters.appended,
                "written": counters.written,
                "spooled": counters.spooled,
                "replayed": counters.replayed,
                "backpressure": counters.backpressure,
                "dropped": counters.dropped,
                "rejected": counters.rejected,
            }
        # The durable outboxes of the sinks (Governance audit, CostOps track, Edge).
        outboxes = getattr(services, "outboxes", ())
        if outboxes:
            values["outboxes"] = [box.status() for box in outboxes]
        return values
