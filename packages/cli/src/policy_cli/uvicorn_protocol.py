"""uvicorn's httptools protocol, with a response's head and body sent in one system call.

uvicorn writes a response in two `transport.write` calls, the status line and
headers when the app sends `http.response.start`, the body when it sends
`http.response.body`. Each write is a `send(2)` (the transport writes at once
when its buffer is empty), and on loopback each send also delivers the segment
to the peer: at 5,000 decisions/s a quarter of the worker's Python thread was
in those two writes (docs/benchmarks.md, "one write per response").

`CoalescingTransport` holds the first write of a loop turn and sends it
joined to the next one, or on its own at the next turn of the loop when
no other write comes: a head followed by its body (Litestar sends both
without yielding) goes out as one segment, with no added latency; a
response without a body (HEAD, 204) waits at most one turn. Order is kept;
`close()` sends what is held first, `abort()` drops it, as the transport's
own buffer would be.

Pinned by packages/cli/tests/test_uvicorn_protocol.py (the transport
against a recording one, and a real uvicorn server answering keep-alive,
HEAD, streamed and closing responses byte for byte as the stock protocol
does).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport"]


class CoalescingTransport:
    """Wraps a transport: a write is held until the next write or the next loop turn."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            if not data:
                return
            self._held = bytes(data)  # a caller may reuse its buffer
            self._loop.call_soon(self._flush)
        else:
            self._held = None
            self._transport.write(held + data)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._flush()
        self._transport.set_protocol(protocol)

    def __getattr__(self, name: str) -> Any:  # the rest of the transport's interface
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a `CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
