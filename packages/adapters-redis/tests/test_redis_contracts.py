"""The Redis adapters pass the core's contract suites against a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from policy_core.memory import ManualClock, MemoryDecisionCache, RateStrategy, TieredDecisionCache
from policy_core.ratelimits import parse_rate_limits
from policy_core.testing import (
    ChangeFeedContract,
    DecisionCacheContract,
    RateLimiterContract,
    RateLimiterFor,
    UsageStoreContract,
)
from policy_redis import RedisChangeFeed, RedisDecisionCache, RedisRateLimiter, RedisUsageStore
from redis.asyncio import Redis

Advance = Callable[[float], Awaitable[None]]


def expire_faster(client: Redis[bytes], prefix: str) -> Advance:
    """Let `seconds` pass for the keys under `prefix` by shortening their TTLs on the server."""

    async def step(seconds: float) -> None:
        async for name in client.scan_iter(match=prefix + "*"):
            left = await client.pttl(name)
            if left >= 0:  # -1: no TTL, -2: gone meanwhile
                if left <= seconds * 1000:
                    await client.delete(name)
                else:
                    await client.pexpire(name, left - int(seconds * 1000))

    return step


class TestRedisDecisionCache(DecisionCacheContract):
    @pytest.fixture
    def decision_cache(self, client: Redis[bytes], prefix: str) -> RedisDecisionCache:
        return RedisDecisionCache(client, prefix=prefix)

    @pytest.fixture
    def advance(self, client: Redis[bytes], prefix: str) -> Advance:
        return expire_faster(client, prefix)


class TestTieredOverRedis(DecisionCacheContract):
    """The cluster's cache: L1 in process in front of Redis."""

    @pytest.fixture
    def decision_cache(
        self, client: Redis[bytes], prefix: str, clock: ManualClock
    ) -> TieredDecisionCache:
        return TieredDecisionCache(
            MemoryDecisionCache(clock), RedisDecisionCache(client, prefix=prefix)
        )

    @pytest.fixture
    def advance(self, client: Redis[bytes], prefix: str, clock: ManualClock) -> Advance:
        on_server = expire_faster(client, prefix)

        async def step(seconds: float) -> None:
            clock.advance(seconds)
            await on_server(seconds)

        return step


class TestRedisUsageStore(UsageStoreContract):
    @pytest.fixture
    def usage_store(self, client: Redis[bytes], prefix: str, clock: ManualClock) -> RedisUsageStore:
        return RedisUsageStore(client, prefix=prefix, clock=clock)

    @pytest.fixture
    def advance(self, clock: ManualClock) -> Advance:
        async def step(seconds: float) -> None:
            clock.advance(seconds)

        return step


class TestRedisChangeFeed(ChangeFeedContract):
    @pytest.fixture
    async def change_feed(
        self, client: Redis[bytes], prefix: str
    ) -> AsyncIterator[RedisChangeFeed]:
        feed = RedisChangeFeed(client, channel=prefix + "changes")
        try:
            yield feed
        finally:
            await feed.close()


class TestRedisRateLimiter(RateLimiterContract):
    @pytest.fixture(params=["fixed-window", "moving-window", "sliding-window"])
    def rate_limiter_for(
        self, request: pytest.FixtureRequest, client: Redis[bytes], prefix: str
    ) -> RateLimiterFor:
        strategy: RateStrategy = request.param
        built = 0

        def build(spec: str) -> RedisRateLimiter:
            # Each limiter its own namespace under the test's prefix: fresh counters.
            nonlocal built
            built += 1
            return RedisRateLimiter(
                client, parse_rate_limits(spec), prefix=f"{prefix}{built}:", strategy=strategy
            )

        return build
