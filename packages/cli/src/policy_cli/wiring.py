"""Adapter construction for the PostgreSQL and Redis deployments (used by `bootstrap`).

Kept apart so that the memory deployment never imports a driver. Every
function registers what it opens on the caller's AsyncExitStack, so the
composition root closes it all, in reverse order, whatever happens.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policy_core.integrations import CallStats, IntegrationFacts, IntegrationSet
from policy_core.ports import (
    ApiKeyStore,
    ChangeFeed,
    Clock,
    ComplianceChecker,
    DecisionCache,
    EdgePublisher,
    GovernanceSink,
    PolicyStore,
    RateLimiter,
    UsageSink,
    UsageStore,
)

from policy_cli.errors import CliError, ExitCode
from policy_cli.settings import Settings

if TYPE_CHECKING:
    from policy_postgres import PostgresDecisionLog

__all__ = [
    "PostgresParts",
    "RedisParts",
    "database_connection",
    "integrations",
    "postgres",
    "redis",
    "redis_namespace",
    "start_embedded",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PostgresParts:
    store: PolicyStore
    log: PostgresDecisionLog  # the writer and the reader of the audit trail
    api_keys: ApiKeyStore
    ping: Callable[[], Awaitable[bool]]
    usage: UsageStore  # the node's counters, shared by its workers (single deployment)


@dataclass(frozen=True, kw_only=True)
class RedisParts:
    cache: DecisionCache
    usage: UsageStore
    feed: ChangeFeed
    rate_limiter: RateLimiter | None
    ping: Callable[[], Awaitable[bool]]


async def start_embedded(settings: Settings, stack: AsyncExitStack) -> str:
    """Start PostgreSQL in `<data_dir>/postgres` for the life of `stack`; its URL.

    A server another process already runs on this data dir (`llm-policy serve`)
    is reused and left running: only a server this call started is stopped.
    """
    from policy_postgres import EmbeddedPostgres

    server = EmbeddedPostgres(settings.data_dir)
    already_running = (server.pgdata / "postmaster.pid").exists()
    try:
        # initdb and start take seconds: off the event loop.
        url = await asyncio.to_thread(server.start)
    except Exception as exc:
        raise CliError(
            f"cannot start the embedded PostgreSQL in {server.pgdata}: {exc}",
            ExitCode.UNREACHABLE,
            hint="check that the data dir (LLM_POLICY_DATA_DIR) is writable, "
            "or set LLM_POLICY_DATABASE_URL to a running PostgreSQL",
        ) from None
    if not already_running:
        stack.push_async_callback(asyncio.to_thread, server.stop)
    return url


async def _open_pool(settings: Settings, url: str, stack: AsyncExitStack, **kw: Any) -> Any:
    from policy_postgres import open_pool

    schema = settings.database_schema
    if schema is not None:
        # The schema must exist before connections select it; created once, idempotently.
        setup = await open_pool(url, min_size=1, max_size=1)
        try:
            async with setup.connection() as conn:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')  # validated name
        finally:
            await setup.close()
    pool = await open_pool(url, schema=schema, **kw)
    stack.push_async_callback(pool.close)
    return pool


@asynccontextmanager
async def database_connection(settings: Settings) -> AsyncIterator[Any]:
    """One autocommit connection to the deployment's database (embedded or not)."""
    async with AsyncExitStack() as stack:
        url = settings.database_url or await start_embedded(settings, stack)
        pool = await _open_pool(settings, url, stack, min_size=1, max_size=1)
        async with pool.connection() as conn:
            yield conn


def _spool_slot(root: Path, stack: AsyncExitStack) -> Path:
    """A spool file this process alone writes: `decisions-<n>`, n the first free slot.

    The decision log's spool is single-writer, and several processes share a
    data dir (HTTP workers, a CLI command beside the server). Each holds an
    exclusive lock on its slot while it runs; a restarted process takes a
    free slot again and replays what an earlier holder left there.
    """
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1024):
        lock = (root / f"decisions-{n}.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        stack.callback(lock.close)  # closing the file releases the lock
        _adopt_journals(root, root / f"decisions-{n}")
        return root / f"decisions-{n}"
    raise CliError(
        f"every decision-log spool slot in {root} is taken",
        ExitCode.USAGE,
        hint="too many processes share this data dir; give each deployment its own",
    )


def _adopt_journals(root: Path, own: Path) -> None:
    """Move the journal segments of free slots (their holders died) into slot `own`.

    A killed HTTP worker's respawn usually takes its slot again and ships its
    journal; when it takes another one (or the workers are fewer now), the
    segments would wait for the next holder of that slot. The decision log of
    `own` ships the adopted segments at start like its own (policy_postgres.journal).
    """
    from policy_postgres.journal import segments

    mine = segments(own)
    k = int(mine[-1].name.rsplit(".", 1)[1]) + 1 if mine else 0
    for lock_path in sorted(root.glob("decisions-*.lock")):
        slot = lock_path.with_suffix("")
        if slot == own:
            continue
        orphans = segments(slot)
        if not orphans:
            continue
        with lock_path.open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held: a live process writes that journal
            for segment in segments(slot):
                os.replace(segment, own.with_name(f"{own.name}.journal.{k}"))
                k += 1
            _log.info("decision log: adopted the journal of %s", slot.name)


async def postgres(
    settings: Settings, url: str, clock: Clock, stack: AsyncExitStack
) -> PostgresParts:
    """The PostgreSQL adapters over one pool (migrated first when asked), closed with `stack`."""
    from policy_postgres import (
        PostgresApiKeyStore,
        PostgresDecisionLog,
        PostgresPolicyStore,
        PostgresUsageStore,
        migrate,
        status,
    )

    pool = await _open_pool(settings, url, stack, max_size=max(4, settings.workers * 4))
    async with pool.connection() as conn:
        if settings.migrate_on_start:
            applied = await migrate(conn)
            if applied:
                _log.info("applied migrations %s", applied)
        else:
            pending = [m.version for m in await status(conn) if m.applied_at is None]
            if pending:
                raise CliError(
                    f"the database schema is not up to date: migrations {pending} are pending",
                    ExitCode.USAGE,
                    hint="run `llm-policy db migrate`, or set LLM_POLICY_MIGRATE_ON_START=true",
                )
    spool = _spool_slot(Path(settings.data_dir) / "spool", stack)
    log = PostgresDecisionLog(pool, spool_path=spool, link_helper=settings.decision_log_helper)
    await log.start()
    stack.push_async_callback(log.close)

    async def ping() -> bool:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        return True

    # Usage counters: one statement per evaluation that needs facts, on connections
    # handed out without the pool's liveness check (which would cost a round trip), and
    # committed without waiting for the WAL flush (a PostgreSQL crash, not a restart,
    # may lose the last fraction of a second of counts; measured in docs/benchmarks.md).
    usage_pool = await _open_pool(
        settings,
        url,
        stack,
        min_size=1,
        max_size=8,
        check=False,
        parameters={"synchronous_commit": "off"},
        name="llm-policy-usage",
    )
    return PostgresParts(
        store=PostgresPolicyStore(pool, clock=clock),
        log=log,
        api_keys=PostgresApiKeyStore(pool),
        ping=ping,
        usage=PostgresUsageStore(usage_pool, clock=clock),
    )


def redis_namespace(settings: Settings) -> str:
    """The prefix of this deployment's Redis keys and change channel.

    Named after the database schema: the instances that share a policy store
    share their counters, cache and notifications; another deployment on the
    same Redis (another schema) shares nothing with them.
    """
    return f"llm-policy:{settings.database_schema or 'public'}:"


async def redis(settings: Settings, url: str, clock: Clock, stack: AsyncExitStack) -> RedisParts:
    """The Redis adapters over one client, closed with `stack`.

    The decision cache is L1 in process in front of Redis (an L2 failure only
    costs the shared hits); usage counters take the Redis server's clock, so
    every replica slides the same windows; so do the APIs' rate limits.
    """
    from policy_core.errors import StoreUnavailable
    from policy_core.memory import MemoryDecisionCache, TieredDecisionCache
    from policy_core.ratelimits import parse_rate_limits
    from policy_redis import (
        RedisChangeFeed,
        RedisDecisionCache,
        RedisRateLimiter,
        RedisUsageStore,
        close_client,
        open_client,
    )
    from policy_redis.errors import UNAVAILABLE

    try:
        client = await open_client(url)
    except StoreUnavailable as exc:
        raise CliError(
            str(exc),
            ExitCode.UNREACHABLE,
            hint="start Redis, or point LLM_POLICY_REDIS_URL to it",
        ) from None
    stack.push_async_callback(close_client, client)
    namespace = redis_namespace(settings)
    feed = RedisChangeFeed(client, channel=namespace + "changes")
    stack.push_async_callback(feed.close)  # before the client: LIFO
    l2 = RedisDecisionCache(client, prefix=namespace + "cache:")
    limits = parse_rate_limits(settings.rate_limits)

    async def ping() -> bool:
        try:
            return bool(await client.ping())
        except UNAVAILABLE:  # not ready; a redis exception never leaves the wiring
            return False

    return RedisParts(
        cache=TieredDecisionCache(MemoryDecisionCache(clock), l2),
        usage=RedisUsageStore(client, prefix=namespace + "usage:"),
        feed=feed,
        rate_limiter=RedisRateLimiter(
            client, limits, prefix=namespace + "ratelimit:", strategy=settings.rate_limit_strategy
        )
        if limits
        else None,
        ping=ping,
    )


async def integrations(settings: Settings, clock: Clock, stack: AsyncExitStack) -> IntegrationSet:
    """The integration clients the settings enable (each by its URL), closed with `stack`.

    Every deployment calls this (through `bootstrap.wire`); without any URL
    nothing is imported and the set is empty (the facts fail as "not configured").
    """
    stats = CallStats()
    if not ({"shield", "costops", "governance"} & settings.integrations):
        return IntegrationSet(stats=stats)
    from policy_integrations import BreakerSettings, CostOpsClient, GovernanceClient, ShieldClient

    timeout = settings.integration_timeout_ms / 1000.0
    breaker = BreakerSettings(
        timeout=timeout,
        failures=settings.integration_breaker_failures,
        cooldown=settings.integration_breaker_cooldown_seconds,
        clock=clock,
        observer=stats,
    )
    shield = costops = governance = None
    if settings.shield_url:
        shield = ShieldClient(
            settings.shield_url,
            token=settings.shield_token,
            breaker=breaker,
            cache_seconds=settings.shield_cache_seconds,
        )
        stack.push_async_callback(shield.close)
    if settings.costops_url:
        costops = CostOpsClient(settings.costops_url, token=settings.costops_token, breaker=breaker)
        stack.push_async_callback(costops.close)
    if settings.governance_url:
        governance = GovernanceClient(
            settings.governance_url,
            token=settings.governance_token,
            breaker=breaker,
            ttl=settings.governance_models_ttl_seconds,
            stale_seconds=settings.governance_models_stale_seconds,
        )
        stack.push_async_callback(governance.close)
    probes = {
        name: client
        for name, client in (("shield", shield), ("costops", costops), ("governance", governance))
        if client is not None
    }
    # The guard times each call out; the facts' own limit is a safety net just above it
    # (were it first, the breaker would never hear of the timeout).
    facts = IntegrationFacts(
        shield=shield, costops=costops, governance=governance, timeout=timeout + 0.1
    )
    return IntegrationSet(facts, probes, stats)


@dataclass(frozen=True, kw_only=True)
class Sinks:
    """The write side of the integrations one deployment provides (all None: not configured)."""

    governance: GovernanceSink | None = None
    usage: UsageSink | None = None
    edge: EdgePublisher | None = None
    compliance: ComplianceChecker | None = None
    #: every durable queue, for /metrics (`llm_policy_outbox_*`)
    outboxes: tuple[Any, ...] = ()


async def sinks(settings: Settings, stats: CallStats, stack: AsyncExitStack) -> Sinks:
    """Governance audit and CostOps track outboxes, Edge deployments, compliance admission.

    Each durable queue lives in its own locked slot under LLM_POLICY_OUTBOX_DIR
    (default `<data_dir>/outbox`), so several workers never share one; all are
    started here and closed with `stack` (what is still queued is written to disk).
    """
    if not (settings.governance_url or settings.costops_url or settings.edge_url):
        return Sinks()
    from policy_core.integrations import CallGuard
    from policy_integrations.admission import ComplianceClient
    from policy_integrations.edge import EdgeClient
    from policy_integrations.outbox import claim_slot
    from policy_integrations.sinks import governance_audit_outbox, usage_track_outbox

    base = Path(settings.outbox_dir or Path(settings.data_dir) / "outbox")
    timeout = settings.integration_timeout_ms / 1000.0
    # Deliveries are off the request path: a guard of their own, with room to answer.
    delivery_timeout = max(timeout, 1.0)

    def guard(name: str, seconds: float) -> CallGuard:
        return CallGuard(
            name,
            timeout=seconds,
            failures=settings.integration_breaker_failures,
            cooldown=settings.integration_breaker_cooldown_seconds,
            observer=stats,
        )

    governance = usage = edge = compliance = None
    outboxes: list[Any] = []

    async def open_outbox(sink: str, integration: str, make: Any, url: str, token: Any) -> Any:
        """One sink's outbox: its claimed slot, its delivery, started; closed by `stack`.

        The slot takes over what free slots hold (a worker killed, fewer workers now).
        """
        slot = claim_slot(base / sink, adopt=True)
        stack.callback(slot.release)
        outbox, delivery = make(
            url,
            slot.path,
            guard(integration, delivery_timeout),
            token=token,
            memory_limit=settings.outbox_memory_events,
        )
        stack.push_async_callback(delivery.close)
        await outbox.start()
        stack.push_async_callback(outbox.close)
        outboxes.append(outbox)
        return outbox

    if settings.governance_url:
        governance = await open_outbox(
            "governance_audit",
            "governance",
            governance_audit_outbox,
            settings.governance_url,
            settings.governance_token,
        )
        if settings.governance_enforce:
            compliance = ComplianceClient(
                settings.governance_url,
                guard("governance", timeout),
                token=settings.governance_token,
            )
            stack.push_async_callback(compliance.close)
    if settings.costops_url:
        usage = await open_outbox(
            "costops_track",
            "costops",
            usage_track_outbox,
            settings.costops_url,
            settings.costops_token,
        )
    if settings.edge_url:
        slot = claim_slot(base / "edge")
        stack.callback(slot.release)
        regions = [r.strip() for r in (settings.edge_regions or "").split(",") if r.strip()]
        edge = EdgeClient(
            settings.edge_url,
            slot.path,
            guard("edge", delivery_timeout),
            token=settings.edge_token,
            regions=regions,
            sync_guard=guard("edge", max(10.0, delivery_timeout)),
        )
        await edge.start()
        stack.push_async_callback(edge.close)
        outboxes.append(edge)
    return Sinks(
        governance=governance,
        usage=usage,
        edge=edge,
        compliance=compliance,
        outboxes=tuple(outboxes),
    )
