"""Test support shipped with the core: contract suites for port adapters, language case files.

Each `*Contract` class holds async test methods that take the adapter from a
fixture; an adapter's test module subclasses it as `Test...` and provides the
fixture (see each module's docstring), so every adapter runs the same suite.
"""

from policy_core.testing._support import T0, decision_record, eventually, new_revision, raises
from policy_core.testing.integrations_contract import IntegrationRig, IntegrationsContract
from policy_core.testing.log_contract import DecisionLogContract
from policy_core.testing.ports_contract import (
    ApiKeyStoreContract,
    ChangeFeedContract,
    DecisionCacheContract,
    UsageStoreContract,
)
from policy_core.testing.ratelimit_contract import RateLimiterContract, RateLimiterFor
from policy_core.testing.store_contract import PolicyStoreContract

__all__ = [
    "T0",
    "ApiKeyStoreContract",
    "ChangeFeedContract",
    "DecisionCacheContract",
    "DecisionLogContract",
    "IntegrationRig",
    "IntegrationsContract",
    "PolicyStoreContract",
    "RateLimiterContract",
    "RateLimiterFor",
    "UsageStoreContract",
    "decision_record",
    "eventually",
    "new_revision",
    "raises",
]
