"""The settings of the gRPC API, built by the composition root (`policy_cli`).

Nothing in `policy_grpc` reads the environment: the CLI maps `LLM_POLICY_*`
variables to these fields.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["GrpcSettings"]


class GrpcSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the gRPC API bounds its work and shuts down.

    Authentication is not configured here: the services carry the
    authenticator the composition root built (`GrpcServices.authenticator`),
    the same one the HTTP API uses.
    """

    # --- limits -------------------------------------------------------------------
    # A larger message is refused with RESOURCE_EXHAUSTED (gRPC's usual default is 4 MiB).
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 4 * 1024 * 1024
    # Requests of one stream being evaluated or waiting for their answer to be
    # written; when reached the server stops reading that stream (HTTP/2 flow
    # control then holds the client back).
    stream_max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 256

    # --- lifecycle ------------------------------------------------------------------
    # After SIGTERM: how long running calls may take to finish before they are cancelled.
    drain_seconds: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    # Server reflection (grpc.reflection.v1 and v1alpha), for grpcurl and friends.
    reflection: bool = True
