"""Static proof (for mypy) that each memory adapter satisfies its port; never executed."""

from __future__ import annotations

from policy_core import ports
from policy_core.clock import ManualClock, SystemClock
from policy_core.memory.api_keys import MemoryApiKeyStore
from policy_core.memory.cache import MemoryDecisionCache
from policy_core.memory.decision_log import MemoryDecisionLog
from policy_core.memory.feed import MemoryChangeFeed
from policy_core.memory.integrations import (
    MemoryCompliance,
    MemoryCostOps,
    MemoryEdgePublisher,
    MemoryGovernance,
    MemoryGovernanceSink,
    MemoryShield,
    MemoryUsageSink,
)
from policy_core.memory.store import MemoryPolicyStore
from policy_core.memory.tiered import TieredDecisionCache
from policy_core.memory.usage import MemoryUsageStore


def _check(clock: ManualClock) -> None:  # pragma: no cover
    _clock: ports.Clock = clock
    _system: ports.Clock = SystemClock()
    _store: ports.PolicyStore = MemoryPolicyStore(clock)
    _log: ports.DecisionLog = MemoryDecisionLog()
    _cache: ports.DecisionCache = MemoryDecisionCache(clock)
    _usage: ports.UsageStore = MemoryUsageStore(clock)
    _feed: ports.ChangeFeed = MemoryChangeFeed()
    _keys: ports.ApiKeyStore = MemoryApiKeyStore()
    _shield: ports.ShieldScanner = MemoryShield()
    _cost: ports.CostOpsBudget = MemoryCostOps()
    _models: ports.GovernanceModels = MemoryGovernance()
    _probe: ports.IntegrationProbe = MemoryShield()
    _gov: ports.GovernanceSink = MemoryGovernanceSink()
    _edge: ports.EdgePublisher = MemoryEdgePublisher()
    _usage_sink: ports.UsageSink = MemoryUsageSink()
    _compliance: ports.ComplianceChecker = MemoryCompliance()
    _tiered: ports.DecisionCache = TieredDecisionCache(_cache, _cache)
