"""Adapter construction for the PostgreSQL and Redis deployments (used by `bootstrap`).

Kept apart so that the memory deployment never imports a driver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from policy_core.ports import (
    ApiKeyStore,
    ChangeFeed,
    Clock,
    DecisionCache,
    DecisionLog,
    PolicyStore,
    UsageStore,
)

from policy_cli.errors import CliError, ExitCode
from policy_cli.settings import Settings

__all__ = ["PostgresParts", "RedisParts", "postgres", "redis", "start_embedded"]


@dataclass(frozen=True, kw_only=True)
class PostgresParts:
    store: PolicyStore
    log: DecisionLog
    api_keys: ApiKeyStore
    ping: Callable[[], Awaitable[bool]]


@dataclass(frozen=True, kw_only=True)
class RedisParts:
    cache: DecisionCache
    usage: UsageStore
    feed: ChangeFeed
    ping: Callable[[], Awaitable[bool]]


def _pending(what: str) -> CliError:
    return CliError(
        f"{what} is not available in this build yet",
        ExitCode.UNREACHABLE,
        hint="use LLM_POLICY_DEPLOYMENT=memory, or --policies PATH for local files",
    )


async def start_embedded(settings: Settings, stack: AsyncExitStack) -> str:
    """Start PostgreSQL in `<data_dir>/postgres` for the life of `stack`; its URL."""
    raise _pending("embedded PostgreSQL")


async def postgres(
    settings: Settings, url: str, clock: Clock, stack: AsyncExitStack
) -> PostgresParts:
    """The PostgreSQL adapters over one pool, closed with `stack`."""
    raise _pending("the PostgreSQL adapter")


async def redis(settings: Settings, url: str, clock: Clock, stack: AsyncExitStack) -> RedisParts:
    """The Redis adapters over one client, closed with `stack`."""
    raise _pending("the Redis adapter")
