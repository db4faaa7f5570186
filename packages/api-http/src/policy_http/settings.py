"""The settings of the HTTP API, built by the composition root and passed to `create_app`.

Nothing in `policy_http` reads the environment: the CLI maps `LLM_POLICY_*`
variables to these fields (the comments name the variable each one comes from).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["HttpSettings"]

_Positive = Annotated[int, msgspec.Meta(ge=1)]


class HttpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the HTTP API bounds requests, observes and describes itself.

    Authentication and rate limits are not here: they come with the services
    (`authenticator`, `rate_limiter`), built by the composition root.
    """

    # --- request limits -----------------------------------------------------
    max_body_bytes: _Positive = 1_048_576  # LLM_POLICY_MAX_BODY_BYTES -> 413
    max_context_depth: _Positive = 32  # nesting of objects/arrays in one context -> 422
    max_context_items: _Positive = 10_000  # keys + values in one context -> 422
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000

    # --- observability -------------------------------------------------------
    access_log: bool = False  # one JSON line per request (costs throughput; off by default)
    otlp_endpoint: str | None = None  # spans exported when set (LLM_POLICY_OTLP_ENDPOINT)
    service_name: str = "llm-policy"
    # Where several workers share one /metrics (LLM_POLICY_METRICS_DIR for `llm-policy
    # serve`; prometheus_client's own variable must be set before it is imported: the CLI's job).
    metrics_multiprocess_dir: str | None = None

    # --- process -------------------------------------------------------------------
    # After startup, move everything allocated so far (modules, compiled policies,
    # the app) out of the cyclic collector's reach (gc.freeze): full collections
    # then scan only request-time objects. Measured: p99 170 ms -> 34 ms, 17% less
    # CPU per decision (docs/benchmarks-http.md). Process-wide: one app per worker.
    gc_freeze: bool = True

    # --- misc -------------------------------------------------------------------
    cors_origins: tuple[str, ...] = ()  # LLM_POLICY_CORS_ORIGINS (comma separated)
    title: str = "LLM Policy Engine"
    version: str = "1.0.0"
