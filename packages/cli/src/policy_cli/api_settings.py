"""The APIs' own settings, derived from the deployment's settings (the APIs never see these)."""

from __future__ import annotations

from policy_grpc import GrpcSettings
from policy_http import HttpSettings

from policy_cli.settings import Settings

__all__ = ["grpc_settings", "http_settings"]


def http_settings(settings: Settings) -> HttpSettings:
    """What `policy_http.create_app` needs: authentication, request limits, observability.

    Rate limits come with the services (`bootstrap` builds the limiter).
    """
    return HttpSettings(
        jwt_secret=settings.effective_jwt_secret(),
        jwks_file=settings.jwks_file,
        jwt_issuer=settings.jwt_issuer,
        jwt_audience=settings.jwt_audience,
        api_key_cache_seconds=settings.api_key_cache_seconds,
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
    """What `policy_grpc.create_grpc_server` needs: the same credentials as HTTP."""
    return GrpcSettings(
        jwt_secret=settings.effective_jwt_secret(),
        jwks_file=settings.jwks_file,
        jwt_issuer=settings.jwt_issuer,
        jwt_audience=settings.jwt_audience,
        api_key_cache_seconds=settings.api_key_cache_seconds,
    )
