"""Running the ASGI app factory under granian (default) or uvicorn, with N workers.

Each worker process imports `target` ("module:function") and calls it to
build its own app. Both servers stop accepting on SIGINT/SIGTERM, finish
in-flight requests, then run the app's shutdown (closing the services and
flushing the decision log).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["run_asgi"]

GRACEFUL_SECONDS = 30


def run_asgi(
    target: str,
    *,
    host: str,
    port: int,
    workers: int,
    impl: Literal["granian", "uvicorn"] = "granian",
    log_level: Literal["debug", "info", "warning", "error"] = "info",
) -> None:
    """Serve until a signal stops the server; returns after a graceful shutdown."""
    if impl == "uvicorn":
        import uvicorn

        uvicorn.run(
            target,
            host=host,
            port=port,
            workers=workers,
            factory=True,
            access_log=False,  # the app logs requests itself when asked (never tokens)
            log_level=log_level,
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            lifespan="on",
        )
        return
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    Server(
        target,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        log_access=False,
        log_level=LogLevels(log_level),
        workers_kill_timeout=GRACEFUL_SECONDS,
        websockets=False,
    ).serve()
