"""A local fake integration server (127.0.0.1 only) for tests, benches and docs.

`FakeServer(service)` serves a policy_core FakeService over real HTTP: the
service decides every answer and fault (error status, `hang` accepts the
request and never answers, malformed and wrong-typed bodies, latency);
`headers` keeps the headers of every request received.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web
from policy_core.integrations import FakeService

__all__ = ["FakeServer", "ThreadedFakeServer", "refused_url"]


class FakeServer:
    def __init__(self, service: FakeService) -> None:
        self.service = service
        self.headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        body = await request.read() if request.can_read_body else None
        status, answer = await self.service.exchange(request.method, request.path, body or None)
        return web.Response(status=status, body=answer, content_type="application/json")

    async def start(self) -> FakeServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(self, *_: Any) -> None:
        await self.stop()


async def refused_url() -> str:
    """A 127.0.0.1 URL on a port nothing listens on (bound, then released)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return f"http://127.0.0.1:{port}"


class ThreadedFakeServer:
    """A FakeServer on its own event loop in a daemon thread (for sync tests and subprocesses).

    `with ThreadedFakeServer(service) as server:` serves until the block ends; the
    `service` may be changed meanwhile (its fault, latency) from the caller's thread.
    """

    def __init__(self, service: FakeService) -> None:
        self.service = service
        self.server = FakeServer(service)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def headers(self) -> list[dict[str, str]]:
        return self.server.headers

    def __enter__(self) -> ThreadedFakeServer:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self

    def __exit__(self, *_: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
