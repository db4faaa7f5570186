"""aiohttp clients of the LLM-Shield, LLM-CostOps and LLM-Governance integrations (facts)."""

from policy_integrations.clients import (
    BreakerSettings,
    CostOpsClient,
    GovernanceClient,
    ShieldClient,
)

__all__ = ["BreakerSettings", "CostOpsClient", "GovernanceClient", "ShieldClient"]
