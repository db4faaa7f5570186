"""Running the ASGI app factory under uvicorn (default) or granian, with N workers.

Each worker process imports `target` ("module:function") and calls it to
build its own app. Both servers stop accepting on SIGINT/SIGTERM, finish
in-flight requests, then run the app's shutdown (closing the services and
flushing the decision log).
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Literal

__all__ = ["ignore_stop_signals", "run_asgi"]

GRACEFUL_SECONDS = 30
# An idle keep-alive connection is closed after this long. uvicorn's default, 5 s, is shorter
# than the idle timeout of common proxies and pools (60 s): a client reusing a connection the
# server is closing at that moment loses its request (seen at 5,000/s: 47 lost requests).
KEEP_ALIVE_SECONDS = 75
_STARTUP_FAILURE = 3  # uvicorn's exit status of a worker whose startup failed


def run_asgi(
    target: str,
    *,
    host: str,
    port: int,
    workers: int,
    impl: Literal["granian", "uvicorn"] = "uvicorn",
    log_level: Literal["debug", "info", "warning", "error"] = "info",
) -> None:
    """Serve until a signal stops the server; returns after a graceful shutdown.

    Any number of SIGINT/SIGTERM, to this process or its whole group, stops
    it once: the first starts the shutdown, the others are ignored.
    """
    try:
        _serve(target, host=host, port=port, workers=workers, impl=impl, log_level=log_level)
    finally:
        ignore_stop_signals()


def ignore_stop_signals() -> None:
    """From here on the process is stopping: further SIGINT/SIGTERM are ignored.

    Python restores the default action of signals it handled when the
    interpreter finalizes, so a late SIGTERM (systemd signals the whole group,
    `uv run` forwards another) would kill the process during its last steps
    (closing the store, stopping embedded PostgreSQL) with status -15. An
    ignored signal stays ignored.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _serve(
    target: str,
    *,
    host: str,
    port: int,
    workers: int,
    impl: Literal["granian", "uvicorn"],
    log_level: Literal["debug", "info", "warning", "error"],
) -> None:
    if impl == "uvicorn":
        _uvicorn(target, host=host, port=port, workers=workers, log_level=log_level)
        return
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from policy_http.logs import stdlib_json_config

    _granian_server()(
        target,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        log_access=False,
        log_level=LogLevels(log_level),
        workers_kill_timeout=GRACEFUL_SECONDS,
        # A worker that dies (OOM killer, SIGKILL) is started again; without this granian
        # shuts the whole server down when one worker exits (found by `make reliability`).
        respawn_failed_workers=True,
        websockets=False,
        # Every line JSON (granian's own default writes "[INFO] ..." text lines).
        log_dictconfig=stdlib_json_config(log_level),
    ).serve()


def _uvicorn(
    target: str,
    *,
    host: str,
    port: int,
    workers: int,
    log_level: Literal["debug", "info", "warning", "error"],
) -> None:
    """uvicorn with httptools and uvloop, its workers always under its supervisor.

    The supervisor (a parent process holding the socket) restarts a worker
    that dies, even the only one: `uvicorn.run` serves a single worker in its
    own process, so a SIGKILL would take the whole server. Exits with status 3
    when a worker fails at startup (the app's lifespan failed, or the settings).
    """
    import uvicorn
    from policy_http.logs import stdlib_json_config
    from uvicorn.supervisors import Multiprocess

    from policy_cli.uvicorn_protocol import CoalescingHttpToolsProtocol

    config = uvicorn.Config(
        target,
        host=host,
        port=port,
        workers=workers,
        factory=True,
        http=CoalescingHttpToolsProtocol,  # httptools, a response in one write
        loop="uvloop",
        lifespan="on",
        access_log=False,  # the app logs requests itself when asked (never tokens)
        log_level=log_level,
        log_config=stdlib_json_config(log_level),
        server_header=False,  # no banner; the app's security headers are the rest
        proxy_headers=False,  # the client address is the peer's, as under granian
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(p.exitcode == _STARTUP_FAILURE for p in supervisor.processes):
        raise SystemExit(_STARTUP_FAILURE)


def _granian_server() -> Any:
    """granian's Server with a signal handler that cannot deadlock.

    granian's own handler sets a `threading.Event` from inside the handler.
    The handler runs on the main thread, between two bytecodes: when a second
    signal arrives while the main thread holds that Event's lock (inside the
    first `set()`, or in `wait()`'s bookkeeping), `set()` waits for a lock its
    own thread holds, forever. This handler records the first signal and
    wakes the main loop from another thread, so it never blocks; later
    signals are no-ops.
    """
    from granian.server import Server

    class _Server(Server):  # type: ignore[misc, valid-type]
        _stopping = False

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            if self._stopping:
                return
            self._stopping = True
            self.interrupt_signal = True
            threading.Thread(target=self.main_loop_interrupt.set, daemon=True).start()

    return _Server
