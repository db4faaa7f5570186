"""Run the app under an ASGI server (granian by default; uvicorn as an alternative).

With several workers each worker process imports `target` and calls it (a
factory) to build its own app, so `target` must be an import string
("package.module:function") of a zero-argument function returning the app,
typically `create_app(services_factory, http_settings)`. Both servers stop
accepting on SIGTERM/SIGINT, finish in-flight requests, then run the app's
shutdown (which closes the services and flushes the decision log).
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["ServerOptions", "run_server"]


class ServerOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How to serve: address, processes, server implementation."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    server: Literal["granian", "uvicorn"] = "granian"
    # Seconds a worker gets to finish in-flight requests when asked to stop.
    graceful_timeout: int = 30
    backlog: int = 2048
    log_level: Literal["debug", "info", "warning", "error"] = "info"


def run_server(target: str, options: ServerOptions | None = None) -> None:
    """Serve the app built by the factory `target` until a signal stops the server."""
    opts = options or ServerOptions()
    if opts.server == "uvicorn":
        _run_uvicorn(target, opts)
    else:
        _run_granian(target, opts)


def _run_granian(target: str, opts: ServerOptions) -> None:
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    Server(
        target,
        address=opts.host,
        port=opts.port,
        interface=Interfaces.ASGI,
        workers=opts.workers,
        loop=Loops.auto,
        backlog=opts.backlog,
        factory=True,
        log_access=False,  # the app logs requests itself when asked (no tokens, no bodies)
        log_level=LogLevels(opts.log_level),
        workers_kill_timeout=opts.graceful_timeout,
        websockets=False,
    ).serve()


def _run_uvicorn(target: str, opts: ServerOptions) -> None:
    import uvicorn

    uvicorn.run(
        target,
        host=opts.host,
        port=opts.port,
        workers=opts.workers,
        factory=True,
        access_log=False,
        log_level=opts.log_level,
        backlog=opts.backlog,
        timeout_graceful_shutdown=opts.graceful_timeout,
        lifespan="on",
    )
