"""A local fake of the services' write side (127.0.0.1 only), for tests, benches and docs.

`Receiver` answers Governance `audit/log` and `compliance/check`, CostOps
`track` and Edge `deploy`/`sync` like the services would, and remembers
every request: path, `Idempotency-Key` and JSON body. It can be stopped and
started again on the same port (an outage), answer a status instead
(`fail_with`), or answer compliance checks with `compliance`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import defaultdict
from typing import Any

from aiohttp import web

__all__ = ["Received", "Receiver", "ThreadedReceiver"]


class Received:
    """One request the receiver acknowledged."""

    __slots__ = ("body", "key", "path")

    def __init__(self, path: str, key: str | None, body: Any) -> None:
        self.path, self.key, self.body = path, key, body

    def __repr__(self) -> str:
        return f"Received({self.path!r}, {self.key!r})"


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.received: dict[str, list[Received]] = defaultdict(list)
        self.headers: list[dict[str, str]] = []
        #: answer this status to every POST instead (None: acknowledge)
        self.fail_with: int | None = None
        #: the answer to `POST /api/v1/compliance/check`
        self.compliance: dict[str, Any] = {
            "compliant": True,
            "violations": [],
            "recommendations": [],
        }
        self._runner: web.AppRunner | None = None
        self._deployments = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def keys(self, path: str) -> list[str | None]:
        return [r.key for r in self.received[path]]

    def bodies(self, path: str) -> list[Any]:
        return [r.body for r in self.received[path]]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/health":
            return web.json_response({"status": "ok"})
        self.headers.append(dict(request.headers))
        if self.fail_with is not None:
            return web.json_response({"error": "injected"}, status=self.fail_with)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "malformed JSON"}, status=400)
        self.received[request.path].append(
            Received(request.path, request.headers.get("Idempotency-Key"), body)
        )
        match request.path:
            case "/api/v1/compliance/check":
                return web.json_response(self.compliance)
            case "/api/v1/deploy":
                self._deployments += 1
                return web.json_response(
                    {"deploymentId": f"d-{self._deployments}", "status": "deployed"}
                )
            case "/api/v1/audit/log" | "/api/v1/track" | "/api/v1/sync":
                return web.json_response({"ok": True}, status=202)
        return web.json_response({"error": "not found"}, status=404)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *_: Any) -> None:
        await self.stop()


class ThreadedReceiver:
    """A Receiver on its own event loop in a daemon thread (for sync tests and subprocesses).

    `with ThreadedReceiver() as r:` serves until the block ends; `r.receiver`
    is the Receiver (its `received`, `fail_with`, `compliance`).
    """

    def __init__(self) -> None:
        self.receiver = Receiver()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.receiver.url

    def __enter__(self) -> Receiver:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self._loop).result(10)
        return self.receiver

    def __exit__(self, *_: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
