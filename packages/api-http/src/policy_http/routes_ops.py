"""Liveness, readiness and Prometheus metrics (no authentication)."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST

from policy_http._runtime import Runtime
from policy_http.schemas import HealthStatus, IntegrationStatus

__all__ = ["ops_routes"]


async def readiness(rt: Runtime) -> dict[str, bool]:
    """The checks of /ready (and of `llm_policy_ready`): every one must be True."""
    checks: dict[str, bool] = {"services": False, "rate_limits": False}
    try:
        checks["services"] = await rt.services.ready()
        checks["rate_limits"] = await rt.limits.ping()
    except Exception:  # any failure simply means "not ready"
        checks["services"] = False
    return checks


def _integrations(rt: Runtime) -> dict[str, IntegrationStatus] | msgspec.UnsetType:
    """Each configured integration's state (no I/O); left out when none is configured."""
    integrations = rt.integrations
    if integrations is None or not integrations.probes:
        return msgspec.UNSET
    return {
        name: IntegrationStatus(
            url=state.url,
            breaker=state.breaker,
            consecutive_failures=state.consecutive_failures,
            last_error=state.last_error,
            stale=state.stale,
        )
        for name, state in integrations.states().items()
    }


def ops_routes(rt: Runtime) -> list[HTTPRouteHandler]:
    """/health, /ready and /metrics."""

    @get("/health", summary="Liveness: the process answers", tags=["operations"])
    async def health() -> HealthStatus:
        return HealthStatus(status="ok")

    @get(
        "/ready",
        summary="Readiness: the store answers and a policy set is loaded",
        tags=["operations"],
        responses={503: ResponseSpec(HealthStatus, description="Not ready (see checks).")},
    )
    async def ready() -> Response[HealthStatus]:
        checks = await readiness(rt)
        ok = all(checks.values())
        return Response(
            HealthStatus(
                status="ok" if ok else "unavailable",
                checks=checks,
                integrations=_integrations(rt),
            ),
            status_code=200 if ok else 503,
        )

    @get(
        "/metrics",
        summary="Prometheus metrics",
        tags=["operations"],
        media_type=CONTENT_TYPE_LATEST,
        include_in_schema=True,
    )
    async def metrics() -> Response[bytes]:
        ready = all((await readiness(rt)).values())
        return Response(rt.metrics.render(ready=ready), media_type=CONTENT_TYPE_LATEST)

    return [health, ready, metrics]
