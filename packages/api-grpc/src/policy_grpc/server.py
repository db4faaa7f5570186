"""Building and running the gRPC server: PolicyService, Health, reflection, graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import weakref
from importlib import resources
from typing import Any, cast

from google.protobuf import descriptor_pb2, descriptor_pool  # type: ignore[import-untyped]
from grpclib.health.check import ServiceStatus
from grpclib.health.service import OVERALL, Health
from grpclib.health.v1 import health_pb2
from grpclib.protocol import H2Protocol
from grpclib.reflection.service import ServerReflection
from grpclib.server import Server

from policy_grpc._mapped import mapped_handlers
from policy_grpc._service import CallTracker, GrpcServices, PolicyGrpcService
from policy_grpc.settings import GrpcSettings

__all__ = ["GrpcServer", "create_grpc_server", "serve"]

_log = logging.getLogger("policy_grpc")


def _descriptor_pool() -> descriptor_pool.DescriptorPool:
    """The proto files served by reflection: ours (with struct.proto) and health.proto."""
    pool = descriptor_pool.DescriptorPool()
    data = resources.files("policy_grpc._generated").joinpath("policy.binpb").read_bytes()
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(file)
    pool.AddSerializedFile(health_pb2.DESCRIPTOR.serialized_pb)
    return pool


class _Server(Server):
    """grpclib's server, remembering its connections so that a drain can close them.

    grpclib's `close` cancels the running calls but leaves the clients'
    connections open, and since Python 3.12 `asyncio.Server.wait_closed` waits
    until every connection is gone: a client holding its channel would hold
    the drain forever.
    """

    def __init__(self, handlers: list[Any]) -> None:
        super().__init__(handlers)
        self.connections: weakref.WeakSet[H2Protocol] = weakref.WeakSet()

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        self.connections.add(protocol)
        return protocol

    def close_connections(self) -> None:
        for protocol in list(self.connections):
            connection = getattr(protocol, "connection", None)  # set once connected
            if connection is not None:
                connection.close()


class GrpcServer:
    """A grpclib server for the policy API, with health and a graceful drain.

    `start` binds and marks the service SERVING; `drain` marks it NOT_SERVING,
    refuses new calls, lets streams answer what they accepted, waits up to
    `settings.drain_seconds` for running calls, then closes, the clients'
    connections included.
    """

    def __init__(self, services: GrpcServices, settings: GrpcSettings) -> None:
        self.settings = settings
        self.calls = CallTracker()
        self.service = PolicyGrpcService(services, settings, self.calls)
        self.health_status = ServiceStatus()
        handlers: list[Any] = [
            self.service,
            # The service by name, and "" (the whole server) for plain health probes.
            Health({self.service: [self.health_status], OVERALL: [self.health_status]}),
        ]
        if settings.reflection:
            handlers = ServerReflection.extend(handlers, pool=_descriptor_pool())
        self.server = _Server(mapped_handlers(handlers))

    async def start(self, host: str | None = None, port: int | None = None, **kw: Any) -> None:
        """Listen (see grpclib's Server.start for the keyword arguments)."""
        await self.server.start(host, port, **kw)
        self.health_status.set(True)

    @property
    def port(self) -> int:
        """The bound TCP port (useful with port 0)."""
        listening = cast("asyncio.Server | None", self.server._server)
        if listening is None or not listening.sockets:
            raise RuntimeError("the gRPC server is not started")
        return int(listening.sockets[0].getsockname()[1])

    async def drain(self) -> None:
        """Graceful shutdown (idempotent)."""
        if self.calls.draining.is_set():
            return
        self.health_status.set(False)
        self.calls.draining.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.calls.wait_idle(), self.settings.drain_seconds)
        if self.calls.active:
            _log.warning(
                "cancelling %d gRPC calls still running after the drain", self.calls.active
            )
        self.server.close()
        self.server.close_connections()
        await self.server.wait_closed()


def create_grpc_server(services: GrpcServices, grpc_settings: GrpcSettings) -> GrpcServer:
    """The gRPC server over `services` (not started): see `GrpcServer` and `serve`."""
    return GrpcServer(services, grpc_settings)


async def serve(
    services: GrpcServices,
    settings: GrpcSettings,
    host: str = "127.0.0.1",
    port: int = 50051,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set), then drain and return.

    The caller owns `services`: closing them after this returns flushes the
    decision log. `ready` is set once the port is bound.
    """
    server = create_grpc_server(services, settings)
    await server.start(host, port)
    _log.info("gRPC API listening on %s:%d", host, server.port)
    stopping = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stopping.set)
            installed.append(sig)
    if ready is not None:
        ready.set()
    try:
        await stopping.wait()
        _log.info("draining the gRPC API")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await server.drain()
