"""gRPC API of the policy engine: grpclib over messages generated from proto/ (betterproto2).

    server = create_grpc_server(services, GrpcSettings())  # services.authenticator checks callers
    await server.start("0.0.0.0", 50051)
    ...
    await server.drain()

or `await serve(services, settings, host, port)`, which drains on SIGTERM.
The generated message types stay inside this package.
"""

from policy_grpc._service import GrpcServices
from policy_grpc.server import GrpcServer, create_grpc_server, serve
from policy_grpc.settings import GrpcSettings

__all__ = ["GrpcServer", "GrpcServices", "GrpcSettings", "create_grpc_server", "serve"]
