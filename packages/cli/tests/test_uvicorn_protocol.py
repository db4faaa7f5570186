"""`policy_cli.uvicorn_protocol`: a response's head and body in one write, and nothing else changed.

The transport against a recording one (what is written, when, in which
order), then a real uvicorn server with the coalescing protocol answering the
same raw requests byte for byte as with uvicorn's own httptools protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from policy_cli.testing import free_port
from policy_cli.uvicorn_protocol import CoalescingHttpToolsProtocol, CoalescingTransport
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Recording:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", b""))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


async def _turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_a_head_and_its_body_are_one_write() -> None:
    inner = _Recording()
    t = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert inner.calls == []
    assert t.get_write_buffer_size() == 38
    t.write(memoryview(b"{}"))
    assert inner.calls == [("write", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")]
    await _turn()  # the scheduled flush finds nothing held
    assert len(inner.calls) == 1


async def test_a_lone_write_goes_out_at_the_next_turn() -> None:
    inner = _Recording()
    t = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    buf = bytearray(b"HTTP/1.1 204 No Content\r\n\r\n")
    t.write(buf)
    buf[:] = b"overwritten by its owner"  # the held bytes are a copy
    await _turn()
    assert inner.calls == [("write", b"HTTP/1.1 204 No Content\r\n\r\n")]
    t.write(b"")  # nothing to send: nothing held, nothing written
    await _turn()
    assert inner.calls == [("write", b"HTTP/1.1 204 No Content\r\n\r\n")]


async def test_order_is_kept_across_many_writes() -> None:
    inner = _Recording()
    t = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    for i in range(5):
        t.write(b"%d" % i)
    await _turn()
    assert b"".join(d for _, d in inner.calls) == b"01234"
    assert [d for _, d in inner.calls] == [b"01", b"23", b"4"]


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    inner = _Recording()
    t = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"last words")
    t.close()
    assert inner.calls == [("write", b"last words"), ("close", b"")]
    assert t.is_closing()

    inner = _Recording()
    t = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"never sent")
    t.abort()
    await _turn()
    assert inner.calls == [("abort", b"")]
    assert t.get_extra_info("peername") == ("127.0.0.1", 1)


# --- a real server, both protocols, the same bytes ---------------------------------------


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream":  # chunked, with turns of the loop between the chunks
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
    else:
        out = b'{"path":"%s","got":%d}' % (path.encode(), len(body))
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
        if path == "/bye":
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})


_REQUESTS = [
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
    # two pipelined in one segment
    b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /bye HTTP/1.1\r\nHost: x\r\n\r\n",  # the server closes after this one
]


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


@contextlib.asynccontextmanager
async def _server(protocol: type[asyncio.Protocol]) -> AsyncIterator[int]:
    """A uvicorn server with `protocol` on a free port; yields the port."""
    port = free_port()
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, http=protocol, lifespan="on", log_level="warning",
        server_header=False, date_header=False, access_log=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn has a flag, no event)
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _exchange(protocol: type[asyncio.Protocol]) -> bytes:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for request in _REQUESTS:
                sock.sendall(request)
                if request.startswith(b"GET /bye"):
                    break
            return _read_all(sock)

    async with _server(protocol) as port:
        return await asyncio.to_thread(client, port)


async def test_the_server_answers_byte_for_byte_as_uvicorn_s_own_protocol() -> None:
    ours = await _exchange(CoalescingHttpToolsProtocol)
    stock = await _exchange(HttpToolsProtocol)
    assert ours == stock
    assert ours.count(b"HTTP/1.1 ") == 8  # one answer each, the pipelined pair included
    assert b"5\r\nthree\r\n0\r\n\r\n" in ours
    assert ours.endswith(b'{"path":"/bye","got":0}')


async def test_the_coalescing_server_sends_a_response_in_one_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counted on the real transport: one write per (non-streamed) response."""
    writes: list[bytes] = []
    real_init = CoalescingTransport.__init__

    def counting_init(self: CoalescingTransport, transport: Any, loop: Any) -> None:
        class Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

            def write(self, data: bytes) -> None:
                writes.append(bytes(data))
                transport.write(data)

        real_init(self, Counting(), loop)  # type: ignore[arg-type]

    monkeypatch.setattr(CoalescingTransport, "__init__", counting_init)

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(_REQUESTS[0] + _REQUESTS[1])
            sock.sendall(b"GET /bye HTTP/1.1\r\nHost: x\r\n\r\n")
            return _read_all(sock)

    async with _server(CoalescingHttpToolsProtocol) as port:
        got = await asyncio.to_thread(client, port)
    assert got.count(b"HTTP/1.1 200 OK") == 3
    assert len(writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK") and w.endswith(b"}") for w in writes)
