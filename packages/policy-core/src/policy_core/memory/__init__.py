"""In-memory implementations of every port: tests, embedding, and the single-node default."""

from policy_core.clock import ManualClock, SystemClock
from policy_core.memory.api_keys import MemoryApiKeyStore
from policy_core.memory.cache import MemoryDecisionCache
from policy_core.memory.decision_log import MemoryDecisionLog
from policy_core.memory.feed import MemoryChangeFeed
from policy_core.memory.integrations import (
    FakeService,
    MemoryCompliance,
    MemoryCostOps,
    MemoryEdgePublisher,
    MemoryGovernance,
    MemoryGovernanceSink,
    MemoryShield,
    MemoryUsageSink,
)
from policy_core.memory.ratelimit import MemoryRateLimiter, RateStrategy
from policy_core.memory.store import MemoryPolicyStore
from policy_core.memory.tiered import TieredDecisionCache
from policy_core.memory.usage import (
    SETTLE_GRACE_SECONDS,
    MemoryUsageStore,
    period_start,
    window_seconds,
)

__all__ = [
    "SETTLE_GRACE_SECONDS",
    "FakeService",
    "ManualClock",
    "MemoryApiKeyStore",
    "MemoryChangeFeed",
    "MemoryCompliance",
    "MemoryCostOps",
    "MemoryDecisionCache",
    "MemoryDecisionLog",
    "MemoryEdgePublisher",
    "MemoryGovernance",
    "MemoryGovernanceSink",
    "MemoryPolicyStore",
    "MemoryRateLimiter",
    "MemoryShield",
    "MemoryUsageSink",
    "MemoryUsageStore",
    "RateStrategy",
    "SystemClock",
    "TieredDecisionCache",
    "period_start",
    "window_seconds",
]
