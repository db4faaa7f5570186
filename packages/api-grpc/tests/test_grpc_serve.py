"""`serve`: binds, answers, and drains on SIGTERM (or when `stop` is set)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from typing import Any

from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from policy_grpc import GrpcServer, GrpcSettings, serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _status(port: int) -> int:
    channel = Channel("127.0.0.1", port)
    try:
        reply = await HealthStub(channel).Check(HealthCheckRequest(service=""), timeout=5)
        return int(reply.status)
    finally:
        channel.close()


async def test_serve_until_stop(bundle: Any) -> None:
    port, ready, stop = _free_port(), asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve(bundle, GrpcSettings(), "127.0.0.1", port, ready=ready, stop=stop)
    )
    await asyncio.wait_for(ready.wait(), 10)
    assert await _status(port) == HealthCheckResponse.SERVING
    stop.set()
    await asyncio.wait_for(task, 10)
    assert task.exception() is None


async def test_serve_drains_on_sigterm(bundle: Any) -> None:
    port, ready = _free_port(), asyncio.Event()
    task = asyncio.create_task(serve(bundle, GrpcSettings(), "127.0.0.1", port, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    # `ready` is set after the handler is installed: the signal reaches serve, not pytest.
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 10)
    assert task.exception() is None
    with socket.socket() as probe:  # drained and closed: nothing listens any more
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_drain_closes_the_connections_clients_keep_open(server: GrpcServer) -> None:
    # Since Python 3.12 asyncio's server is closed only once every connection is
    # gone: the drain has to close them, or a client keeping its channel holds it.
    channel = Channel("127.0.0.1", server.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        reply = await HealthStub(channel).Check(HealthCheckRequest(service=""), timeout=5)
        assert reply.status == HealthCheckResponse.SERVING
        await asyncio.wait_for(server.drain(), 10)
        await asyncio.wait_for(reader.read(), 10)  # up to the end: the server closed it
        assert reader.at_eof()
    finally:
        channel.close()
        writer.close()
