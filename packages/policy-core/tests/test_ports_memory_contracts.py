"""The memory adapters pass the same contract suites as every real adapter."""

from __future__ import annotations

import pytest
from policy_core.memory import (
    ManualClock,
    MemoryApiKeyStore,
    MemoryChangeFeed,
    MemoryDecisionCache,
    MemoryDecisionLog,
    MemoryPolicyStore,
    MemoryRateLimiter,
    MemoryUsageStore,
    RateStrategy,
    SystemClock,
    TieredDecisionCache,
)
from policy_core.ratelimits import parse_rate_limits
from policy_core.testing import (
    T0,
    ApiKeyStoreContract,
    ChangeFeedContract,
    DecisionCacheContract,
    DecisionLogContract,
    PolicyStoreContract,
    RateLimiterContract,
    RateLimiterFor,
    UsageStoreContract,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def advance(clock: ManualClock):  # type: ignore[no-untyped-def]
    async def step(seconds: float) -> None:
        clock.advance(seconds)

    return step


class TestMemoryPolicyStore(PolicyStoreContract):
    @pytest.fixture
    def policy_store(self) -> MemoryPolicyStore:
        return MemoryPolicyStore(SystemClock())


class TestMemoryDecisionLog(DecisionLogContract):
    @pytest.fixture
    def decision_log(self) -> MemoryDecisionLog:
        return MemoryDecisionLog()


class TestMemoryDecisionCache(DecisionCacheContract):
    @pytest.fixture
    def decision_cache(self, clock: ManualClock) -> MemoryDecisionCache:
        return MemoryDecisionCache(clock)


class TestMemoryUsageStore(UsageStoreContract):
    @pytest.fixture
    def usage_store(self, clock: ManualClock) -> MemoryUsageStore:
        return MemoryUsageStore(clock)


class TestMemoryChangeFeed(ChangeFeedContract):
    @pytest.fixture
    def change_feed(self) -> MemoryChangeFeed:
        return MemoryChangeFeed()


class TestMemoryApiKeyStore(ApiKeyStoreContract):
    @pytest.fixture
    def api_key_store(self) -> MemoryApiKeyStore:
        return MemoryApiKeyStore()


class TestTieredDecisionCache(DecisionCacheContract):
    @pytest.fixture
    def decision_cache(self, clock: ManualClock) -> TieredDecisionCache:
        return TieredDecisionCache(MemoryDecisionCache(clock), MemoryDecisionCache(clock))


class TestMemoryRateLimiter(RateLimiterContract):
    @pytest.fixture(params=["fixed-window", "moving-window", "sliding-window"])
    def rate_limiter_for(
        self, request: pytest.FixtureRequest, clock: ManualClock
    ) -> RateLimiterFor:
        strategy: RateStrategy = request.param

        def build(spec: str) -> MemoryRateLimiter:
            return MemoryRateLimiter(parse_rate_limits(spec), strategy=strategy, clock=clock)

        return build
