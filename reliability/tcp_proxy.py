"""A small TCP proxy that can stall and cut connections: the network fault of the reliability suite.

The servers under test reach PostgreSQL and Redis through it. `pause()` stops moving bytes in
both directions (connections stay open, new ones are accepted and held: a stalled network or
a switch dropping packets, as the application sees it); `resume()` lets them flow again;
`drop()` resets every open connection (a NAT or firewall forgetting them).

In process:

    proxy = StallProxy("127.0.0.1", 5432)
    port = await proxy.start()      # listens on 127.0.0.1:<port>
    proxy.pause(); ...; proxy.resume(); await proxy.drop(); await proxy.close()

As a process (what the suite runs, so that its load generator does not slow the proxy):

    python reliability/tcp_proxy.py --control PORT NAME=LISTEN:TARGET [NAME=LISTEN:TARGET ...]

and one line per command on the control port: `pause NAME`, `resume NAME`, `drop NAME`,
`stats NAME` (answered by one JSON line). Every address is 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

HOST = "127.0.0.1"
CHUNK = 64 * 1024


class StallProxy:
    """One listening port forwarding to one target, with pause/resume/drop."""

    def __init__(self, target_host: str, target_port: int, *, listen_port: int = 0) -> None:
        if target_host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the proxy forwards to loopback only")
        self.target = (target_host, target_port)
        self.listen_port = listen_port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0
        self.dropped = 0
        self.bytes = 0

    @property
    def paused(self) -> bool:
        return not self._flowing.is_set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, HOST, self.listen_port)
        self.listen_port = int(self._server.sockets[0].getsockname()[1])
        return self.listen_port

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def drop(self) -> int:
        """Reset every open connection; returns how many were cut."""
        conns = list(self._conns)
        for client, upstream in conns:
            for w in (client, upstream):
                if w is not None:
                    w.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._conns.clear()
        self.dropped += len(conns)
        return len(conns)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.resume()
        await self.drop()

    def stats(self) -> dict[str, object]:
        return {
            "port": self.listen_port,
            "paused": self.paused,
            "open": len(self._conns),
            "accepted": self.accepted,
            "dropped": self.dropped,
            "bytes": self.bytes,
        }

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        entry: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (writer, None)
        self._conns.add(entry)
        try:
            await self._flowing.wait()  # a stalled network does not connect either
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            self._conns.discard(entry)
            entry = (writer, up_writer)
            self._conns.add(entry)
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            self._conns.discard(entry)
            for w in entry:
                if w is not None:
                    w.transport.abort()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                await self._flowing.wait()  # held bytes wait here; TCP backpressure holds the rest
                if not data:
                    break
                writer.write(data)
                self.bytes += len(data)
                await writer.drain()
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()


async def _control(
    proxies: dict[str, StallProxy], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while line := await reader.readline():
            command, _, name = line.decode().strip().partition(" ")
            proxy = proxies.get(name)
            if proxy is None:
                answer: dict[str, object] = {"error": f"no proxy {name!r}"}
            elif command == "pause":
                proxy.pause()
                answer = proxy.stats()
            elif command == "resume":
                proxy.resume()
                answer = proxy.stats()
            elif command == "drop":
                answer = {"dropped": await proxy.drop()} | proxy.stats()
            elif command == "stats":
                answer = proxy.stats()
            else:
                answer = {"error": f"unknown command {command!r}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _serve(control_port: int, specs: list[str]) -> None:
    proxies: dict[str, StallProxy] = {}
    for spec in specs:
        name, _, ports = spec.partition("=")
        listen, _, target = ports.partition(":")
        proxy = StallProxy(HOST, int(target), listen_port=int(listen))
        await proxy.start()
        proxies[name] = proxy
    server = await asyncio.start_server(lambda r, w: _control(proxies, r, w), HOST, control_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({n: p.listen_port for n, p in proxies.items()}), flush=True)
    await stop.wait()
    server.close()
    for proxy in proxies.values():
        await proxy.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("proxies", nargs="+", help="NAME=LISTEN_PORT:TARGET_PORT")
    args = parser.parse_args()
    asyncio.run(_serve(args.control, args.proxies))


class ProxyControl:
    """The client side of the control port (used by the fault scenarios)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def send(self, command: str, name: str) -> dict[str, object]:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            writer.write(f"{command} {name}\n".encode())
            await writer.drain()
            answer: dict[str, object] = json.loads(await reader.readline())
            return answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


if __name__ == "__main__":
    main()
