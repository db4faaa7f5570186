"""One pure ASGI middleware for every matched route: request id, metrics, span, access log.

Kept as a plain closure (no Request object, no header parsing beyond one
scan of the raw list) because it runs on every evaluation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from time import perf_counter
from typing import Any, cast

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from loguru import logger

from policy_http._metrics import Metrics
from policy_http._telemetry import Telemetry

__all__ = ["new_request_id", "observe"]

_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    """A random 128-bit id, as 32 hex digits."""
    return os.urandom(16).hex()


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The caller's X-Request-ID when it is a safe token (it is echoed and logged)."""
    for name, value in headers:
        if name == b"x-request-id":
            return value.decode("ascii") if _SAFE_ID.match(value) else None
    return None


def observe(
    metrics: Metrics, telemetry: Telemetry, access_log: bool
) -> Callable[[ASGIApp], ASGIApp]:
    """The middleware factory Litestar wraps around each route."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(asgi_scope: Scope, receive: Receive, send: Send) -> None:
            scope = cast("dict[str, Any]", asgi_scope)
            if scope["type"] != "http":
                await app(asgi_scope, receive, send)
                return
            start = perf_counter()
            rid = incoming_request_id(scope["headers"]) or new_request_id()
            scope.setdefault("state", {})["request_id"] = rid
            rid_header = (b"x-request-id", rid.encode())
            status = [500]

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                    message["headers"] = [*message.get("headers", ()), rid_header]
                await send(message)

            try:
                if telemetry.enabled:
                    await _traced(app, scope, receive, send_with_id, telemetry, status)
                else:
                    await app(asgi_scope, receive, send_with_id)
            finally:
                route: str = scope.get("path_template") or "unmatched"
                elapsed = perf_counter() - start
                metrics.observe_request(route, scope["method"], status[0], elapsed)
                if access_log:
                    _log_access(scope, route, status[0], elapsed, rid)

        return middleware

    return factory


async def _traced(
    app: ASGIApp,
    scope: dict[str, Any],
    receive: Receive,
    send: Send,
    telemetry: Telemetry,
    status: list[int],
) -> None:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    route = scope.get("path_template") or scope["path"]
    attributes = {"http.request.method": scope["method"], "http.route": route}
    with telemetry.request_span(f"{scope['method']} {route}", headers, attributes) as span:
        try:
            await app(cast("Scope", scope), receive, send)
        finally:
            span.set_attribute("http.response.status_code", status[0])


def _log_access(scope: dict[str, Any], route: str, status: int, elapsed: float, rid: str) -> None:
    state: dict[str, Any] = scope.get("state", {})
    principal = state.get("principal")
    logger.bind(
        request_id=rid,
        method=scope["method"],
        route=route,
        status=status,
        duration_ms=round(elapsed * 1000, 3),
        principal=getattr(principal, "id", None),
    ).info("request")
