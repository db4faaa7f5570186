"""One typed settings object, read from `LLM_POLICY_*` variables and command-line flags.

Nothing here runs at import time: `load_settings(environ, overrides)` is called
by the CLI when a command starts, and returns every problem it found at once,
one clear line each, so that a bad deployment fails before it opens anything.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

__all__ = [
    "DEV_JWT_SECRET",
    "ENV_PREFIX",
    "SECRET_FIELDS",
    "SETTING_HELP",
    "Settings",
    "SettingsError",
    "check_settings",
    "env_name",
    "load_settings",
    "masked",
]

ENV_PREFIX = "LLM_POLICY_"

# Only ever used when LLM_POLICY_ENV=development and no secret is configured, so
# that `make run` and the README work without setup. A production run refuses to
# start without its own secret (see `check_settings`), so this value never guards data.
DEV_JWT_SECRET = "llm-policy-development-secret-not-for-production"  # noqa: S105

# Variables that belong to the test suites, not to a deployment.
_IGNORED_PREFIXES = ("LLM_POLICY_TEST_",)

Environment = Literal["development", "production"]
Deployment = Literal["memory", "single", "cluster"]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The effective configuration of one run; each field is `LLM_POLICY_<FIELD>`."""

    env: Environment = "production"
    deployment: Deployment = "single"
    data_dir: str = ".llm-policy"
    database_url: str | None = None
    database_schema: str | None = None  # PostgreSQL schema (search_path); default: public
    redis_url: str | None = None
    seed_policies: str | None = None  # loaded into an empty store at start
    context_schema: str | None = None  # JSON Schema of the context: `validate` warns on paths
    migrate_on_start: bool = True  # apply pending migrations when a server starts
    decision_log_helper: bool = (
        True  # link the PostgreSQL decision log's batches in a child process
    )
    default_decision: Literal["allow", "deny"] = "allow"
    reservation_ttl_seconds: float = 600.0  # unsettled budget reservations are released after it
    # HTTP server
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 1_048_576
    max_context_depth: int = 32
    max_context_items: int = 10_000
    max_batch: int = 1000
    rate_limits: str | None = None  # e.g. "evaluate=5000/second;admin=20/second"
    rate_limit_strategy: Literal["fixed-window", "moving-window", "sliding-window"] = "fixed-window"
    api_key_cache_seconds: float = 5.0
    cors_origins: str | None = None  # comma separated
    access_log: bool = False
    otlp_endpoint: str | None = None
    metrics_dir: str | None = None  # Prometheus multiprocess directory (several workers)
    # gRPC server
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # authentication
    jwt_secret: str | None = None
    jwks_file: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # client side: talk to a running server instead of a local store
    server: str | None = None
    token: str | None = None
    api_key: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # integrations (docs/integrations.md): each enabled by its base URL
    shield_url: str | None = None
    shield_token: str | None = None
    costops_url: str | None = None
    costops_token: str | None = None
    governance_url: str | None = None
    governance_token: str | None = None
    edge_url: str | None = None
    edge_token: str | None = None
    integration_timeout_ms: int = 200
    integration_breaker_failures: int = 5
    integration_breaker_cooldown_seconds: float = 5.0
    shield_cache_seconds: float = 5.0
    governance_models_ttl_seconds: float = 60.0
    governance_models_stale_seconds: float = 3600.0
    # sinks, admission and edge distribution (docs/integrations.md)
    governance_enforce: bool = False  # policy writes need Governance's compliance check
    outbox_dir: str | None = None  # durable outboxes; default <data_dir>/outbox
    outbox_memory_events: int = 10_000  # events held in memory while the disk refuses: log again
    edge_regions: str | None = None  # comma separated regions sent with each deployment

    @property
    def integrations(self) -> frozenset[str]:
        """The integrations this configuration provides (each enabled by its URL)."""
        return frozenset(
            name
            for name in ("shield", "costops", "governance", "edge")
            if getattr(self, f"{name}_url")
        )

    @property
    def development(self) -> bool:
        return self.env == "development"

    def effective_jwt_secret(self) -> str | None:
        """The configured secret, or the fixed development secret in development."""
        if self.jwt_secret:
            return self.jwt_secret
        if self.development and not self.jwks_file:
            return DEV_JWT_SECRET
        return None


#: One line per setting, for `config show` and the documentation (a test checks
#: that the README's configuration table lists every setting).
SETTING_HELP: dict[str, str] = {
    "env": "`development` signs tokens with a built-in secret; anything else needs real secrets",
    "deployment": "`memory`, `single` (PostgreSQL, embedded by default) or `cluster` (+ Redis)",
    "data_dir": "embedded PostgreSQL, decision-log spool and other local state",
    "database_url": "PostgreSQL URL; unset in `single`: the embedded server in the data dir",
    "database_schema": "PostgreSQL schema to use (default: `public`)",
    "redis_url": "Redis URL (cluster: decision cache, usage counters, change feed, rate limits)",
    "seed_policies": "file or directory of policies loaded when the store is empty at start",
    "context_schema": "JSON Schema file of the request context: validation warns about paths it lacks",
    "migrate_on_start": "apply pending database migrations when a server starts",
    "decision_log_helper": "hash-chain the PostgreSQL decision log's batches in a child process of each worker",
    "default_decision": "decision when no rule of any policy matches: `allow` or `deny`",
    "reservation_ttl_seconds": "seconds a budget reservation of an allowed request is held unless settled",
    "host": "HTTP interface to listen on",
    "port": "HTTP port",
    "workers": "HTTP worker processes",
    "max_body_bytes": "largest request body (413 above)",
    "max_context_depth": "deepest nesting of an evaluation context (422 above)",
    "max_context_items": "most keys and values in one context (422 above)",
    "max_batch": "most requests in one `/evaluate/batch` call (at most 1000)",
    "rate_limits": "per route class, e.g. `evaluate=5000/second;admin=20/second`",
    "rate_limit_strategy": "`fixed-window`, `moving-window` or `sliding-window`",
    "api_key_cache_seconds": "how long a verified API key is remembered (revocation delay)",
    "cors_origins": "comma-separated origins allowed by CORS",
    "access_log": "one JSON log line per HTTP request",
    "otlp_endpoint": "OpenTelemetry collector (OTLP/HTTP) receiving spans",
    "metrics_dir": "Prometheus multiprocess directory (needed with several workers)",
    "grpc_host": "gRPC interface to listen on",
    "grpc_port": "gRPC port",
    "jwt_secret": "HS256 secret of bearer tokens (required outside development)",
    "jwks_file": "JWKS file of RS256/ES256 public keys (instead of, or with, the secret)",
    "jwt_issuer": "required `iss` of tokens, when set",
    "jwt_audience": "required `aud` of tokens, when set",
    "server": "CLI: use this running server (`--server`) instead of the store",
    "token": "CLI: bearer token for `--server` (`--token`)",
    "api_key": "CLI: API key for `--server` (`--api-key`)",
    "log_level": "`debug`, `info`, `warning` or `error`",
    "shield_url": "LLM-Shield base URL: enables the `shield.scan` fact",
    "shield_token": "bearer token sent to LLM-Shield",
    "costops_url": "LLM-CostOps base URL: enables the `costops.budget` fact",
    "costops_token": "bearer token sent to LLM-CostOps",
    "governance_url": "LLM-Governance base URL: enables the `governance.approved_models` fact",
    "governance_token": "bearer token sent to LLM-Governance",
    "edge_url": "LLM-Edge-Agent base URL",
    "edge_token": "bearer token sent to LLM-Edge-Agent",
    "integration_timeout_ms": "per-call timeout of every integration call, in milliseconds",
    "integration_breaker_failures": "consecutive failures that open an integration's circuit breaker",
    "integration_breaker_cooldown_seconds": "seconds an open breaker waits before one probe call",
    "shield_cache_seconds": "how long a Shield answer is reused for the same text and model (0: never)",
    "governance_models_ttl_seconds": "how long the approved-models list is fresh",
    "governance_models_stale_seconds": "how long the last list is still served while Governance fails",
    "governance_enforce": "policy create/update/activation must pass Governance's compliance check "
    "(refused when non-compliant or Governance is unreachable)",
    "outbox_dir": "directory of the durable outboxes (Governance audit, CostOps track, Edge); "
    "default `<data_dir>/outbox`",
    "outbox_memory_events": "while the disk refuses writes, events wait in memory; an error is "
    "logged again each time this many more wait",
    "edge_regions": "comma-separated regions sent with every Edge deployment (empty: all)",
}

SECRET_FIELDS = frozenset(
    {
        "jwt_secret",
        "token",
        "api_key",
        "shield_token",
        "costops_token",
        "governance_token",
        "edge_token",
    }
)
_URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "database_url": ("postgresql", "postgres"),
    "redis_url": ("redis", "rediss", "unix"),
    "server": ("http", "https"),
    "otlp_endpoint": ("http", "https"),
    "shield_url": ("http", "https"),
    "costops_url": ("http", "https"),
    "governance_url": ("http", "https"),
    "edge_url": ("http", "https"),
}
_PORT_FIELDS = ("port", "grpc_port")
_POSITIVE_FIELDS = (
    "workers",
    "reservation_ttl_seconds",
    "max_body_bytes",
    "max_context_depth",
    "max_context_items",
    "max_batch",
    "integration_timeout_ms",
    "integration_breaker_failures",
    "outbox_memory_events",
)


class SettingsError(Exception):
    """Invalid settings: `problems` holds one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def env_name(field: str) -> str:
    """`database_url` -> `LLM_POLICY_DATABASE_URL`."""
    return ENV_PREFIX + field.upper()


def _fields() -> dict[str, Any]:
    return {f.name: f.type for f in msgspec.structs.fields(Settings)}


def _read_env(environ: Mapping[str, str], problems: list[str]) -> dict[str, str]:
    known = {env_name(name): name for name in _fields()}
    raw: dict[str, str] = {}
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX) or key.startswith(_IGNORED_PREFIXES):
            continue
        if key in known:
            if value != "":  # an empty variable means "unset", as in most shells' habits
                raw[known[key]] = value
            continue
        # Compare without the shared prefix, else every name looks alike.
        names = [name.upper() for name in known.values()]
        close = difflib.get_close_matches(key.removeprefix(ENV_PREFIX), names, n=1)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        problems.append(
            f"{key}: unknown setting{hint} (`llm-policy config show` lists the settings)"
        )
    return raw


def _convert(
    values: Mapping[str, Any], sources: Mapping[str, str], problems: list[str]
) -> dict[str, Any]:
    types = _fields()
    out: dict[str, Any] = {}
    for name, value in values.items():
        try:
            out[name] = msgspec.convert(value, types[name], strict=False)
        except msgspec.ValidationError:
            expected = _describe(types[name])
            problems.append(f"{sources[name]}: {value!r} is not valid; expected {expected}")
    return out


def _describe(tp: Any) -> str:
    args = getattr(tp, "__args__", None)
    if getattr(tp, "__origin__", None) is Literal and args:
        return "one of " + ", ".join(str(a) for a in args)
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    return "a string"


def _check_url(source: str, value: str, schemes: tuple[str, ...]) -> str | None:
    try:
        parts = urlsplit(value)
        if parts.port is not None and not 0 < parts.port < 65536:
            raise ValueError
    except ValueError:
        return f"{source}: {value!r} is not a valid URL (bad port)"
    if parts.scheme not in schemes:
        return (
            f"{source}: {_redact_url(value)!r} is not a valid URL; "
            f"expected {schemes[0]}://host[:port]/..."
        )
    # A Unix-socket URL names its directory in the query (`?host=/run/postgresql`).
    if parts.scheme != "unix" and not parts.hostname and "host=" not in parts.query:
        return f"{source}: {_redact_url(value)!r} is not a valid URL: it names no host"
    return None


def _redact_url(value: str) -> str:
    """Hide a password embedded in a URL (`scheme://user:pw@host`)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
    return value


def check_settings(settings: Settings, *, serving: bool, sources: Mapping[str, str]) -> list[str]:
    """Semantic problems of a complete settings object (one line each)."""
    found = [
        issue
        for name, schemes in _URL_SCHEMES.items()
        if (value := getattr(settings, name)) is not None
        and (issue := _check_url(sources[name], value, schemes))
    ]
    found += [
        f"{sources[name]}: {getattr(settings, name)} is not a port (1-65535)"
        for name in _PORT_FIELDS
        if not 0 < getattr(settings, name) < 65536
    ]
    found += [
        f"{sources[name]}: must be a positive number"
        for name in _POSITIVE_FIELDS
        if getattr(settings, name) <= 0
    ]
    schema = settings.database_schema
    if schema is not None and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        found.append(
            f"{sources['database_schema']}: {schema!r} is not a schema name "
            "(lower-case letters, digits, underscores)"
        )
    if settings.context_schema is not None:
        from policy_core.language import ContextSchema, ContextSchemaError

        try:
            ContextSchema.load(settings.context_schema)
        except ContextSchemaError as exc:
            found.append(f"{sources['context_schema']}: {exc}")
    if settings.rate_limits is not None:
        from policy_core.ratelimits import parse_rate_limits

        try:
            parse_rate_limits(settings.rate_limits)
        except ValueError as exc:
            found.append(f"{sources['rate_limits']}: {exc}")
    if settings.deployment == "cluster":
        found += [
            f"{env_name(name)}: a cluster deployment needs it; set it, "
            f"or use {env_name('deployment')}=single"
            for name in ("database_url", "redis_url")
            if getattr(settings, name) is None
        ]
    if settings.governance_enforce and not settings.governance_url:
        found.append(
            f"{env_name('governance_enforce')}: true, but {env_name('governance_url')} is not set: "
            "every policy write would be refused; set the URL or turn enforcement off"
        )
    if serving and not settings.development and not (settings.jwt_secret or settings.jwks_file):
        found.append(
            f"{env_name('jwt_secret')}: not set, and a non-development server needs it "
            f"(or {env_name('jwks_file')}); set it, or {env_name('env')}=development for a trial"
        )
    return found


def load_settings(
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
    *,
    serving: bool = False,
) -> Settings:
    """Build the settings from the environment, then flags (flags win).

    `serving` adds the checks a server needs (a JWT secret outside development).
    Raises SettingsError listing every problem found.
    """
    found: list[str] = []
    raw = _read_env(environ, found)
    sources = {name: env_name(name) for name in _fields()}
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    for name in flags:
        sources[name] = "--" + name.replace("_", "-")
    values: dict[str, Any] = _convert(raw, sources, found)
    values.update(_convert(flags, sources, found))
    if found:
        raise SettingsError(found)
    settings = Settings(**values)
    found = check_settings(settings, serving=serving, sources=sources)
    if found:
        raise SettingsError(found)
    return settings


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as a plain mapping, secrets replaced by `***` (for `config show`)."""
    out: dict[str, Any] = {}
    for name, value in msgspec.structs.asdict(settings).items():
        if name in SECRET_FIELDS and value:
            out[name] = "***"
        elif isinstance(value, str) and name.endswith("_url"):
            out[name] = _redact_url(value)
        else:
            out[name] = value
    return out
