"""The one guard of every protected route: authenticate, authorise, rate-limit.

Each route declares `opt={"permission": ..., "rate_class": ...}`; routes
without a permission (health, metrics, schema) are public. The guard runs
before the body is read, so an unauthenticated caller costs no parsing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from loguru import logger

from policy_http._apikeys import ApiKeyAuth
from policy_http._auth import AuthError, JwtVerifier, Principal
from policy_http._metrics import Metrics
from policy_http._problems import ApiProblem
from policy_http._ratelimit import RateLimits

__all__ = ["Guard", "make_guard", "principal_of"]

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="llm-policy"'}


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal the guard stored for this request."""
    principal: Principal = connection.scope["state"]["principal"]
    return principal


def _credentials(headers: list[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None]:
    auth = key = None
    for name, value in headers:
        if name == b"authorization":
            auth = value
        elif name == b"x-api-key":
            key = value
    return auth, key


def make_guard(
    verifier: JwtVerifier, api_keys: ApiKeyAuth, limits: RateLimits, metrics: Metrics
) -> Guard:
    """Build the guard over this app's verifier, key store and limits."""
    failures_401 = metrics.auth_failures.labels("401")
    failures_403 = metrics.auth_failures.labels("403")

    async def authenticate(scope: Any) -> Principal:
        auth, key = _credentials(scope["headers"])
        if auth is not None:
            scheme, _, token = auth.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("use `Authorization: Bearer <JWT>`")
            if not verifier.enabled:
                raise AuthError("JWT authentication is not configured on this server")
            return verifier.verify(token.strip())
        if key is not None:
            return await api_keys.verify(key.decode("latin-1"))
        raise AuthError("authentication required: send a bearer token or an X-API-Key")

    async def guard(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        permission = handler.opt.get("permission")
        if permission is None:
            return
        scope: Any = connection.scope
        try:
            principal = await authenticate(scope)
        except AuthError as exc:
            failures_401.inc()
            logger.bind(request_id=scope["state"].get("request_id")).info(
                "authentication failed: {}", exc
            )
            raise ApiProblem(401, str(exc), code="unauthenticated", headers=_CHALLENGE) from None
        if permission not in principal.permissions:
            failures_403.inc()
            raise ApiProblem(
                403,
                f"this operation needs the {permission!r} permission, which the roles "
                f"{list(principal.roles)!r} do not grant",
                code="forbidden",
            )
        scope["state"]["principal"] = principal
        rate_class = handler.opt.get("rate_class")
        if rate_class and limits.configured:
            refusal = await limits.hit(rate_class, principal.id)
            if refusal is not None:
                metrics.rate_limited.labels(rate_class).inc()
                raise ApiProblem(
                    429,
                    f"rate limit of {refusal.limit} requests exceeded for {rate_class!r}; "
                    f"retry in {refusal.reset_seconds} s",
                    code="rate_limited",
                    headers=refusal.headers(),
                )

    return guard
