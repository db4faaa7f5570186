"""Running the ASGI app factory under granian (default) or uvicorn, with N workers.

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


def run_asgi(
    target: str,
    *,
    host: str,
    port: int,
    workers: int,
    impl: Literal["granian", "uvicorn"] = "granian",
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
