"""Composition roots: the only place that picks adapters and wires them to the services.

One async context manager per deployment (architecture.md, "Composition roots"):

| deployment | store | cache | usage | feed |
|---|---|---|---|---|
| memory (library, tests) | memory | L1 | memory | memory |
| single (default) | PostgreSQL (LLM_POLICY_DATABASE_URL, else embedded) | L1 | PostgreSQL | memory |
| cluster | PostgreSQL | L1 + Redis | Redis | Redis pub/sub |

The APIs' rate-limit counters live in memory, except in a cluster (Redis,
under the deployment's prefix, shared by every replica).

`bootstrap(settings)` chooses one with a plain `match`. Each opens what it
creates on an AsyncExitStack and closes it, in reverse order, on the way out.
Nothing here runs at import time; adapter packages are imported inside the
deployment that uses them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy_core.auth import (
    ApiKeyVerifier,
    CredentialAuthenticator,
    SigningKey,
    TokenVerifier,
    jwks_keys,
)
from policy_core.engine import IntegrationSource
from policy_core.integrations import IntegrationSet
from policy_core.language import ContextSchema
from policy_core.memory import (
    MemoryApiKeyStore,
    MemoryChangeFeed,
    MemoryDecisionCache,
    MemoryDecisionLog,
    MemoryPolicyStore,
    MemoryRateLimiter,
    MemoryUsageStore,
    SystemClock,
)
from policy_core.ports import (
    ApiKeyStore,
    Authenticator,
    ChangeFeed,
    Clock,
    DecisionCache,
    DecisionHistory,
    DecisionLog,
    PolicyStore,
    RateLimiter,
    UsageStore,
)
from policy_core.ratelimits import RateLimits, parse_rate_limits
from policy_core.services import (
    ApiKeyService,
    DecisionHistoryService,
    EngineHolder,
    EvaluationService,
    PolicyService,
    UsageService,
)

from policy_cli.errors import CliError, ExitCode
from policy_cli.seed import seed_if_empty
from policy_cli.settings import Settings

__all__ = [
    "Adapters",
    "Services",
    "authenticator",
    "bootstrap",
    "memory",
    "memory_adapters",
    "wire",
    "wired",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Adapters:
    """The port implementations one deployment chose."""

    store: PolicyStore
    log: DecisionLog
    history: DecisionHistory  # the read side of `log`'s trail
    cache: DecisionCache
    usage: UsageStore
    feed: ChangeFeed
    api_keys: ApiKeyStore
    clock: Clock
    # Request limits of the APIs; None when the settings limit nothing.
    rate_limiter: RateLimiter | None = None
    # Readiness of the backing services (store, cache); the APIs add "policy set loaded".
    checks: dict[str, Callable[[], Awaitable[bool]]] = field(default_factory=dict)
    # Integration facts (`shield.scan`, `costops.budget`, `governance.approved_models`).
    integrations: IntegrationSource | None = None


@dataclass(frozen=True, kw_only=True)
class Services:
    """What the APIs and the CLI's store mode receive: services, never adapters."""

    policies: PolicyService
    evaluation: EvaluationService
    usage: UsageService
    api_keys: ApiKeyService
    decisions: DecisionHistoryService  # read side of the audit trail (history, stats, counters)
    holder: EngineHolder
    authenticator: Authenticator  # bearer tokens and API keys, for both APIs
    checks: dict[str, Callable[[], Awaitable[bool]]]
    settings: Settings
    rate_limiter: RateLimiter | None = None
    database_url: str | None = None
    # The integration clients, their state and call statistics (never part of readiness).
    integrations: IntegrationSet = field(default_factory=IntegrationSet)
    # The durable outboxes (Governance audit, CostOps track, Edge): `status()` each, for /metrics.
    outboxes: tuple[Any, ...] = ()

    async def ready(self) -> bool:
        """True once every backing service answers and a policy set is loaded."""
        if not self.holder.loaded:
            return False
        for check in self.checks.values():
            try:
                if not await check():
                    return False
            except Exception:  # a check that raises is simply not ready
                return False
        return True


def _jwks(path: str) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(
            f"cannot read the JWKS file {path!r}: {exc}",
            ExitCode.USAGE,
            hint="point LLM_POLICY_JWKS_FILE to a JSON file of RSA / EC P-256 public keys",
        ) from None


def authenticator(settings: Settings, api_keys: ApiKeyService) -> CredentialAuthenticator:
    """The one authenticator of both APIs: the JWKS file is read here, verified in the core."""
    keys: tuple[SigningKey, ...] = ()
    if settings.jwks_file:
        try:
            keys = jwks_keys(_jwks(settings.jwks_file), source=f"JWKS file {settings.jwks_file!r}")
        except ValueError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
    tokens = TokenVerifier(
        secret=settings.effective_jwt_secret(),
        keys=keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    return CredentialAuthenticator(
        tokens=tokens,
        api_keys=ApiKeyVerifier(api_keys, cache_seconds=settings.api_key_cache_seconds),
    )


async def wire(
    settings: Settings, adapters: Adapters, stack: AsyncExitStack, *, database_url: str | None
) -> Services:
    """Build the services over `adapters`, start them, and seed the store when asked."""
    from policy_cli import wiring

    holder = EngineHolder()
    integration_set = await wiring.integrations(settings, adapters.clock, stack)
    # Audit and usage outboxes, Edge deployments, compliance admission (by their URLs).
    sinks = await wiring.sinks(settings, integration_set.stats, stack)
    policies = PolicyService(
        reader=adapters.store,
        writer=adapters.store,
        holder=holder,
        feed=adapters.feed,
        default_decision=settings.default_decision,
        context_schema=(
            ContextSchema.load(settings.context_schema) if settings.context_schema else None
        ),
        integrations=settings.integrations,
        compliance=sinks.compliance,
        edge=sinks.edge,
    )
    evaluation = EvaluationService(
        holder,
        cache=adapters.cache,
        usage=adapters.usage,
        log=adapters.log,
        clock=adapters.clock,
        # A test's own source wins over the clients the settings enable.
        integrations=(
            adapters.integrations if adapters.integrations is not None else integration_set.facts
        ),
        reservation_ttl=settings.reservation_ttl_seconds,
        governance=sinks.governance,
        usage_sink=sinks.usage,
    )
    api_keys = ApiKeyService(adapters.api_keys, adapters.clock)
    verifier = authenticator(settings, api_keys)  # an unusable JWKS fails before anything starts
    await policies.start()
    stack.push_async_callback(policies.close)
    # Records queued by the last requests are made durable before the log closes.
    stack.push_async_callback(adapters.log.flush)
    if settings.seed_policies:
        await seed_if_empty(policies, Path(settings.seed_policies))
    return Services(
        policies=policies,
        evaluation=evaluation,
        usage=UsageService(adapters.usage, sinks.usage),
        api_keys=api_keys,
        decisions=DecisionHistoryService(adapters.history, adapters.log, adapters.clock),
        holder=holder,
        authenticator=verifier,
        checks=adapters.checks,
        settings=settings,
        database_url=database_url,
        rate_limiter=adapters.rate_limiter,
        integrations=integration_set,
        outboxes=sinks.outboxes,
    )


def memory_rate_limiter(settings: Settings, clock: Clock) -> RateLimiter | None:
    """The APIs' limits counted in this process (None when nothing is limited)."""
    limits: RateLimits = parse_rate_limits(settings.rate_limits)
    if not limits:
        return None
    return MemoryRateLimiter(limits, strategy=settings.rate_limit_strategy, clock=clock)


def memory_adapters(settings: Settings, clock: Clock) -> Adapters:
    """The memory deployment's adapters (tests replace some with doubles: `wired`)."""
    log = MemoryDecisionLog(max_records=100_000)
    return Adapters(
        store=MemoryPolicyStore(clock),
        log=log,
        history=log,
        cache=MemoryDecisionCache(clock),
        usage=MemoryUsageStore(clock),
        feed=MemoryChangeFeed(),
        api_keys=MemoryApiKeyStore(),
        clock=clock,
        rate_limiter=memory_rate_limiter(settings, clock),
    )


@asynccontextmanager
async def wired(settings: Settings, adapters: Adapters) -> AsyncIterator[Services]:
    """The services over `adapters` the caller chose, open for the block (no database URL)."""
    async with AsyncExitStack() as stack:
        yield await wire(settings, adapters, stack, database_url=None)


@asynccontextmanager
async def memory(settings: Settings) -> AsyncIterator[Services]:
    """Library and tests: every port in memory; nothing outlives the block."""
    async with wired(settings, memory_adapters(settings, SystemClock())) as services:
        yield services


@asynccontextmanager
async def single_node(settings: Settings) -> AsyncIterator[Services]:
    """One node: PostgreSQL (embedded in the data dir unless a URL is set) holds the store,
    the decision log and the usage counters (shared by the workers, kept across restarts);
    the cache and the change feed are in memory."""
    from policy_cli import wiring

    async with AsyncExitStack() as stack:
        url = settings.database_url or await wiring.start_embedded(settings, stack)
        clock = SystemClock()
        pg = await wiring.postgres(settings, url, clock, stack)
        adapters = Adapters(
            store=pg.store,
            log=pg.log,
            history=pg.log,
            cache=MemoryDecisionCache(clock),
            usage=pg.usage,
            feed=MemoryChangeFeed(),
            api_keys=pg.api_keys,
            clock=clock,
            rate_limiter=memory_rate_limiter(settings, clock),
            checks={"store": pg.ping},
        )
        yield await wire(settings, adapters, stack, database_url=url)


@asynccontextmanager
async def cluster(settings: Settings) -> AsyncIterator[Services]:
    """Many stateless instances: PostgreSQL is the truth, Redis shares counters and changes."""
    from policy_cli import wiring

    # Both URLs are required for a cluster by the settings' own checks.
    assert settings.database_url is not None
    assert settings.redis_url is not None
    async with AsyncExitStack() as stack:
        clock = SystemClock()
        pg = await wiring.postgres(settings, settings.database_url, clock, stack)
        rd = await wiring.redis(settings, settings.redis_url, clock, stack)
        adapters = Adapters(
            store=pg.store,
            log=pg.log,
            history=pg.log,
            cache=rd.cache,
            usage=rd.usage,
            feed=rd.feed,
            api_keys=pg.api_keys,
            clock=clock,
            rate_limiter=rd.rate_limiter,
            checks={"store": pg.ping, "redis": rd.ping},
        )
        yield await wire(settings, adapters, stack, database_url=settings.database_url)


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[Services]:
    """The object graph of the deployment `settings.deployment`, open for the block."""
    opened: AbstractAsyncContextManager[Services]
    match settings.deployment:
        case "memory":
            opened = memory(settings)
        case "single":
            opened = single_node(settings)
        case "cluster":
            opened = cluster(settings)
    async with opened as services:
        yield services
