"""The APIs' own settings, derived from the deployment's settings (the APIs never see these)."""

from __future__ import annotations

from policy_grpc import GrpcSettings
from policy_http import HttpSettings

from policy_cli.settings import Settings

__all__ = ["grpc_settings", "http_settings"]


def http_settings(settings: Settings) -> HttpSettings:
    """What `policy_http.create_app` needs: request limits, observability.

    Authentication and rate limits come with the services (`bootstrap` builds
    the authenticator and the limiter).
    """
    return HttpSettings(
        max_body_bytes=settings.max_body_bytes,
        max_context_depth=settings.max_context_depth,
        max_context_items=settings.max_context_items,
        max_batch=min(settings.max_batch, 1000),
        access_log=settings.access_log,
        otlp_endpoint=settings.otlp_endpoint,
        metrics_multiprocess_dir=settings.metrics_dir,
        cors_origins=tuple(
            o.strip() for o in (settings.cors_origins or "").split(",") if o.strip()
        ),
    )


def grpc_settings(settings: Settings) -> GrpcSettings:
    """What `policy_grpc.create_grpc_server` needs (auth: `Services.authenticator`, as HTTP)."""
    return GrpcSettings()
