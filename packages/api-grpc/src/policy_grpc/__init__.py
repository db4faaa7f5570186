"""grpclib gRPC API (betterproto2 messages) for the policy engine."""

__all__: list[str] = []
