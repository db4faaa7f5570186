"""The settings of the gRPC API, built by the composition root (`policy_cli`).

Nothing in `policy_grpc` reads the environment: the CLI maps `LLM_POLICY_*`
variables to these fields.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["GrpcSettings"]


class GrpcSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the gRPC API authenticates callers, bounds its work and shuts down."""

    # --- authentication (same variables and semantics as the HTTP API) ----------
    jwt_secret: str | None = None  # LLM_POLICY_JWT_SECRET: enables HS256
    jwks_file: str | None = None  # LLM_POLICY_JWKS_FILE: enables RS256/ES256
    jwt_issuer: str | None = None  # LLM_POLICY_JWT_ISSUER
    jwt_audience: str | None = None  # LLM_POLICY_JWT_AUDIENCE
    jwt_leeway_seconds: Annotated[int, msgspec.Meta(ge=0, le=30)] = 30
    api_key_cache_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 5.0
    # False only for local development: calls without credentials act as an admin.
    require_auth: bool = True

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
