"""`create_app(services, http_settings) -> Litestar`: the HTTP API over the core's services.

The app receives services (or a factory that builds them inside the worker's
event loop) and its own settings, never adapters nor the environment. It
opens what it owns (the span exporter) at startup and
closes it at shutdown; with a factory it also closes the services, which
flushes the decision log after the server has finished in-flight requests.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import cast

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from policy_http._docs_page import ReferencePage
from policy_http._evaluation import Evaluations
from policy_http._fastpath import FastPath
from policy_http._guard import Gatekeeper
from policy_http._middleware import observe
from policy_http._problems import exception_handlers
from policy_http._runtime import HttpServices, Runtime, ServicesFactory
from policy_http._security import with_security_headers
from policy_http.routes_admin import admin_routes
from policy_http.routes_evaluate import evaluate_routes
from policy_http.routes_ops import ops_routes
from policy_http.routes_policies import policy_routes
from policy_http.settings import HttpSettings

__all__ = ["API_PREFIX", "PolicyApp", "create_app"]

API_PREFIX = "/api/v1"


def create_app(
    services: HttpServices | ServicesFactory,
    http_settings: HttpSettings | None = None,
) -> Litestar:
    """Build the Litestar app.

    `services` is either the built services (the caller owns their lifetime)
    or a zero-argument callable returning an async context manager of them,
    entered at startup and exited at shutdown (one per worker process).
    Raises ValueError for unusable settings.
    """
    settings = http_settings or HttpSettings()
    factory: ServicesFactory | None = None
    if callable(services):
        factory = services
        rt = Runtime(settings, None)
    else:
        rt = Runtime(settings, services)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.callback(rt.telemetry.shutdown)
            if factory is not None:
                rt.bind(await stack.enter_async_context(factory()))
            if settings.gc_freeze:
                gc.collect()
                gc.freeze()
            yield

    gatekeeper = Gatekeeper(rt, rt.limits, rt.metrics)
    evaluations = Evaluations(rt)
    api = Router(
        API_PREFIX,
        route_handlers=[
            *policy_routes(rt),
            *evaluate_routes(rt, evaluations),
            *admin_routes(rt),
        ],
    )
    app = PolicyApp(
        route_handlers=[api, *ops_routes(rt)],
        guards=[gatekeeper.guard()],
        middleware=[observe(rt.metrics, rt.telemetry, settings.access_log)],
        exception_handlers=exception_handlers,
        request_max_body_size=settings.max_body_bytes,
        lifespan=[lifespan],
        openapi_config=_openapi(settings),
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins))
        if settings.cors_origins
        else None,
        state=None,
        debug=False,
        logging_config=None,
    )
    app.fast_path = FastPath(rt, gatekeeper, evaluations, API_PREFIX)
    return app


class PolicyApp(Litestar):
    """Litestar, with the evaluation routes answered by the fast path (see `_fastpath`)."""

    fast_path: FastPath | None = None

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        if scope["type"] == "http":  # type: ignore[comparison-overlap]  # ScopeType is a str enum
            send = with_security_headers(cast("Send", send))
        fast = self.fast_path
        if fast is not None and fast.handles(scope):
            await fast(scope, cast("Receive", receive), cast("Send", send))
            return
        await super().__call__(scope, receive, send)


def _openapi(settings: HttpSettings) -> OpenAPIConfig:
    components = Components(
        security_schemes={
            "bearerAuth": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
            "apiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
        }
    )
    return OpenAPIConfig(
        title=settings.title,
        version=settings.version,
        description=(
            "Policy decision point for LLM traffic. Errors are application/problem+json "
            "(RFC 9457). Authenticate with `Authorization: Bearer <JWT>` or `X-API-Key`."
        ),
        path="/schema",
        components=components,
        tags=[Tag(name="operations", description="Health, readiness and metrics.")],
        # The first plugin also answers /schema itself: the self-hosted reference page.
        render_plugins=[ReferencePage(), JsonRenderPlugin(), YamlRenderPlugin()],
    )
