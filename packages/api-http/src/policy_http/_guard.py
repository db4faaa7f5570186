"""Authenticate, authorise, rate-limit: one gatekeeper for every protected route.

Authentication itself is the core's (the `Authenticator` the services
carry); this module only takes the `Authorization` and `X-API-Key` headers
to it and answers AuthError with 401, a missing permission with 403. Each
route declares `opt={"permission": ..., "rate_class": ...}`; routes
without a permission (health, metrics, schema) are public. The Litestar guard
and the evaluation fast path both call `Gatekeeper.admit`, before any body is
read, so an unauthenticated caller costs no parsing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from loguru import logger
from policy_core.errors import AuthError
from policy_core.ports import Principal

from policy_http._metrics import Metrics
from policy_http._problems import ApiProblem
from policy_http._ratelimit import RateLimits, rate_limit_headers
from policy_http._runtime import Runtime

__all__ = ["Gatekeeper", "Guard", "principal_of"]

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="llm-policy"'}


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal the gatekeeper stored for this request."""
    principal: Principal = connection.scope["state"]["principal"]
    return principal


def _credentials(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    auth = key = None
    for name, value in headers:
        if name == b"authorization":
            auth = value.decode("latin-1")
        elif name == b"x-api-key":
            key = value.decode("latin-1")
    return auth, key


class Gatekeeper:
    """Admits a request for a permission, or raises the ApiProblem (401/403/429) to answer."""

    def __init__(self, runtime: Runtime, limits: RateLimits, metrics: Metrics) -> None:
        self._runtime = runtime
        self._limits = limits
        self._metrics = metrics
        self._failed_401 = metrics.auth_failures.labels("401")
        self._failed_403 = metrics.auth_failures.labels("403")

    async def admit(
        self,
        headers: list[tuple[bytes, bytes]],
        permission: str,
        rate_class: str | None,
        request_id: str | None,
    ) -> Principal:
        authenticator = self._runtime.authenticator
        if authenticator is None:
            raise ApiProblem(503, "the server is starting; retry shortly", code="starting")
        try:
            principal = await authenticator.authenticate(*_credentials(headers))
        except AuthError as exc:
            self._failed_401.inc()
            logger.bind(request_id=request_id).info("authentication failed: {}", exc)
            raise ApiProblem(401, str(exc), code="unauthenticated", headers=_CHALLENGE) from None
        if permission not in principal.permissions:
            self._failed_403.inc()
            raise ApiProblem(
                403,
                f"this operation needs the {permission!r} permission, which the roles "
                f"{list(principal.roles)!r} do not grant",
                code="forbidden",
            )
        limiter = self._limits.limiter
        if rate_class and limiter is not None:
            refusal = await limiter.hit(rate_class, principal.id)
            if refusal is not None:
                self._metrics.rate_limited.labels(rate_class).inc()
                raise ApiProblem(
                    429,
                    f"rate limit of {refusal.limit} requests exceeded for {rate_class!r}; "
                    f"retry in {refusal.reset_seconds} s",
                    code="rate_limited",
                    headers=rate_limit_headers(refusal),
                )
        return principal

    def guard(self) -> Guard:
        """The Litestar guard over `admit` (it reads the route's `opt`)."""

        async def guard(
            connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
        ) -> None:
            permission = handler.opt.get("permission")
            if permission is None:
                return
            scope: Any = connection.scope
            state = scope["state"]
            state["principal"] = await self.admit(
                scope["headers"], permission, handler.opt.get("rate_class"), state.get("request_id")
            )

        return guard
