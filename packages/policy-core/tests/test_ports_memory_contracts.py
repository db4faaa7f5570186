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
    MemoryUsageStore,
    SystemClock,
    TieredDecisionCache,
)
from policy_core.testing import (
    T0,
    ApiKeyStoreContract,
    ChangeFeedContract,
    DecisionCacheContract,
    DecisionLogContract,
    PolicyStoreContract,
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
