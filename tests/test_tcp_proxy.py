"""The stall proxy of the reliability suite (reliability/tcp_proxy.py): bytes flow, stall, resume, cut."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from tcp_proxy import ProxyControl, StallProxy, _control


class Echo:
    """An upstream that echoes and remembers what it received."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                self.received += data
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[Echo, StallProxy]]:
    echo = Echo()
    port = await echo.start()
    proxy = StallProxy("127.0.0.1", port)
    await proxy.start()
    yield echo, proxy
    await proxy.close()
    assert echo.server is not None
    echo.server.close()
    await echo.server.wait_closed()


async def test_bytes_flow_both_ways(proxied: tuple[Echo, StallProxy]) -> None:
    _, proxy = proxied
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listen_port)
    writer.write(b"hello")
    assert await reader.readexactly(5) == b"hello"
    await close(writer)


async def test_a_pause_holds_the_bytes_until_resume(proxied: tuple[Echo, StallProxy]) -> None:
    echo, proxy = proxied
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listen_port)
    writer.write(b"a")
    assert await reader.readexactly(1) == b"a"
    proxy.pause()
    writer.write(b"held")
    await writer.drain()
    for _ in range(50):  # many loop turns: the pumps had every chance to forward
        await asyncio.sleep(0)
    assert bytes(echo.received) == b"a"
    assert proxy.stats()["paused"] is True
    proxy.resume()
    assert await reader.readexactly(4) == b"held"
    assert bytes(echo.received) == b"aheld"
    await close(writer)


async def test_drop_resets_every_open_connection(proxied: tuple[Echo, StallProxy]) -> None:
    _, proxy = proxied
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listen_port)
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    assert await proxy.drop() == 1
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await reader.readexactly(1)
    await close(writer)
    # New connections work after a drop.
    reader2, writer2 = await asyncio.open_connection("127.0.0.1", proxy.listen_port)
    writer2.write(b"y")
    assert await reader2.readexactly(1) == b"y"
    await close(writer2)
    assert proxy.stats()["dropped"] == 1


async def test_the_control_port_drives_a_named_proxy(proxied: tuple[Echo, StallProxy]) -> None:
    _, proxy = proxied
    server = await asyncio.start_server(lambda r, w: _control({"pg": proxy}, r, w), "127.0.0.1", 0)
    control = ProxyControl(int(server.sockets[0].getsockname()[1]))
    assert (await control.send("pause", "pg"))["paused"] is True
    assert proxy.paused
    assert (await control.send("resume", "pg"))["paused"] is False
    assert "error" in await control.send("pause", "redis")
    server.close()
    await server.wait_closed()


def test_the_proxy_refuses_a_target_off_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        StallProxy("10.0.0.1", 5432)
