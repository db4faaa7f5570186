"""Test support over the composition root: what tests and benchmarks build instead of wiring.

In process, the object graph comes from `bootstrap(settings)`, the code
`llm-policy serve` runs (usually the `memory` deployment of
`memory_settings()`), and the APIs get their settings from the same
`http_settings` / `grpc_settings` mapping as in production:

    app = http_app(memory_settings())                    # Litestar app; services at startup
    async with bootstrap(memory_settings()) as services:
        server = grpc_server(services, memory_settings())

Out of process, `serving(...)` runs `llm-policy serve` (or any command that
serves HTTP) in a process group of its own until the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar
from policy_core.model import Decision
from policy_grpc import GrpcServer, create_grpc_server
from policy_http import create_app
from policy_http.testing import TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET

from policy_cli.api_settings import grpc_settings, http_settings
from policy_cli.bootstrap import Adapters, Services, bootstrap, wired
from policy_cli.settings import Settings

__all__ = [
    "NoDecisionCache",
    "ServerProcess",
    "ThreadedHttpServer",
    "clean_env",
    "free_port",
    "grpc_server",
    "http_app",
    "llm_policy",
    "memory_settings",
    "server_workers",
    "serving",
    "wait_ready",
]


def memory_settings(**overrides: Any) -> Settings:
    """Settings of the memory deployment with the test JWT secret, issuer and audience.

    Nothing comes from the environment; `overrides` are Settings fields.
    """
    base: dict[str, Any] = {
        "deployment": "memory",
        "jwt_secret": TEST_SECRET,
        "jwt_issuer": TEST_ISSUER,
        "jwt_audience": TEST_AUDIENCE,
    }
    return Settings(**(base | overrides))


def http_app(
    settings: Settings | None = None,
    *,
    adapters: Adapters | None = None,
    started: Callable[[Services], None] | None = None,
    **http_overrides: Any,
) -> Litestar:
    """The HTTP app over `bootstrap(settings)`, as each worker of `llm-policy serve` builds it.

    With `adapters` the services are wired over them instead (`wired`: the
    same `wire` as every deployment, with test doubles in some ports). They
    are opened at the app's startup, in its event loop, and closed at
    shutdown; `started` receives them (for tests that look inside).
    `http_overrides` replace fields of the derived HttpSettings; `gc_freeze` is
    off unless given (tests build many apps in one process).
    """
    chosen = settings or memory_settings()
    api = msgspec.structs.replace(http_settings(chosen), **({"gc_freeze": False} | http_overrides))

    @asynccontextmanager
    async def services() -> AsyncIterator[Services]:
        opened = bootstrap(chosen) if adapters is None else wired(chosen, adapters)
        async with opened as built:
            if started is not None:
                started(built)
            yield built

    return create_app(services, api)


class NoDecisionCache:
    """A DecisionCache that keeps nothing (tests whose facts change under the same request)."""

    async def get(self, key: str) -> None:
        return None

    async def set(self, key: str, decision: Decision, ttl_seconds: int) -> None:
        return None

    async def clear(self) -> None:
        return None


def grpc_server(services: Services, settings: Settings, **grpc_overrides: Any) -> GrpcServer:
    """The gRPC server (not started) over `services`, with the settings `grpc serve` derives."""
    api = msgspec.structs.replace(grpc_settings(settings), **grpc_overrides)
    return create_grpc_server(services, api)


# --- a server in a subprocess -------------------------------------------------------------


def llm_policy(*args: str) -> list[str]:
    """The command line of `llm-policy ARGS` with this interpreter (the workspace's)."""
    return [sys.executable, "-m", "policy_cli", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without its LLM_POLICY_* settings (LLM_POLICY_TEST_* kept), plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLM_POLICY_") or k.startswith("LLM_POLICY_TEST_")
    }
    env.update(extra)
    return env


def server_workers(pid: int) -> set[int]:
    """The HTTP worker processes of the `llm-policy serve` process `pid` (Linux /proc).

    Its Python children, less multiprocessing's resource tracker (uvicorn's supervisor
    spawns its workers, and spawning starts a tracker); the embedded PostgreSQL is not
    Python, and each worker's own children (the decision log's link helper) are not
    children of `pid`.
    """
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found |= {int(c) for c in (task / "children").read_text().split()}
    workers = set()
    for child in found:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"python" in cmdline and b"resource_tracker" not in cmdline:
            workers.add(child)
    return workers


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    """Return once `url`/ready answers 200; raise (with the server's output) if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/ready", timeout=2) as resp:  # noqa: S310 - http only
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url}/ready did not answer 200 in {timeout} s:\n{log.read_text()}")


@dataclass(frozen=True)
class ServerProcess:
    """A running server: its base URL, process (leader of its own group) and output file."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def serving(
    command: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    log: Path,
    cwd: Path | None = None,
    timeout: float = 90,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> Iterator[ServerProcess]:
    """Run `command` (which serves HTTP on `port`) until the block ends; yields it once ready.

    Its output goes to `log`. At the end `stop_signal` goes to the whole
    process group (the server's workers too) and the server is awaited.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, log, timeout)
        yield ServerProcess(url=url, proc=proc, log=log)
    finally:
        os.killpg(proc.pid, stop_signal)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class ThreadedHttpServer:
    """An ASGI app (e.g. `http_app(...)`) under uvicorn on 127.0.0.1, on its own loop in a thread.

    `with ThreadedHttpServer(app) as server:` serves `server.url` until the
    block ends (the app's startup and shutdown run). For tests and benches
    whose clients are in this process but must not share its event loop
    (sync clients, a gateway's own loop).
    """

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="http-server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def __enter__(self) -> ThreadedHttpServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError("the server stopped while starting")
            self.thread.join(0.05)
        self.server.should_exit = True
        raise RuntimeError("the server did not start in 30 s")

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
