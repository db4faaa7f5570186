"""In-memory stand-ins for the integration ports (tests, embedding, offline use).

MemoryShield, MemoryCostOps and MemoryGovernance (defined in
policy_core.integrations, re-exported here) are the real call logic (guard,
breaker, caches, decoding) over a FakeService that simulates the service and
injects latency and faults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from policy_core.errors import IntegrationError
from policy_core.integrations import (
    FAULTS,
    FakeService,
    MemoryCostOps,
    MemoryGovernance,
    MemoryShield,
)
from policy_core.ports import (
    ComplianceReport,
    ComplianceViolation,
    DecisionRecord,
    PolicyRecord,
    UsageEvent,
)

__all__ = [
    "FAULTS",
    "FakeService",
    "MemoryCompliance",
    "MemoryCostOps",
    "MemoryEdgePublisher",
    "MemoryGovernance",
    "MemoryGovernanceSink",
    "MemoryShield",
    "MemoryUsageSink",
]


class MemoryGovernanceSink:
    """Collects submitted records in a list."""

    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []

    def submit(self, record: DecisionRecord) -> None:
        self.records.append(record)


class MemoryUsageSink:
    """Collects submitted usage events in a list."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def submit(self, event: UsageEvent) -> None:
        self.events.append(event)


class MemoryEdgePublisher:
    """Edge distribution in memory: the queue supersedes per policy id, like the real one.

    `pending` maps a policy id to the last change queued (revision, deleted,
    policy set) until `acknowledge()` moves it to `deployed`; `synced` keeps
    every `sync`. `fail_sync` makes `sync` raise as an unreachable agent would.
    """

    def __init__(self) -> None:
        self.pending: dict[str, tuple[PolicyRecord, str]] = {}
        self.deployed: list[tuple[PolicyRecord, str]] = []
        self.synced: list[tuple[str, tuple[PolicyRecord, ...]]] = []
        self.fail_sync: str | None = None

    def deploy(self, record: PolicyRecord, policy_set: str) -> None:
        self.pending[record.id] = (record, policy_set)

    def acknowledge(self) -> None:
        """The agent acknowledges everything queued."""
        self.deployed.extend(self.pending.values())
        self.pending.clear()

    async def sync(self, policy_set: str, policies: Sequence[PolicyRecord]) -> None:
        if self.fail_sync is not None:
            raise IntegrationError("edge", self.fail_sync, "error")
        self.synced.append((policy_set, tuple(policies)))


class MemoryCompliance:
    """Governance's compliance check in memory: `violations` (empty: compliant), or unreachable.

    `checks` keeps every (policy id, action) asked; `unreachable` set to a
    reason makes `check` raise IntegrationError as a down Governance would.
    """

    def __init__(self, violations: Sequence[ComplianceViolation] = ()) -> None:
        self.violations: tuple[ComplianceViolation, ...] = tuple(violations)
        self.unreachable: str | None = None
        self.checks: list[tuple[str, str]] = []

    async def check(
        self, document: dict[str, Any], action: Literal["create", "update", "activate"]
    ) -> ComplianceReport:
        metadata = document.get("metadata")
        self.checks.append((str(metadata.get("id") if isinstance(metadata, dict) else ""), action))
        if self.unreachable is not None:
            raise IntegrationError("governance", self.unreachable, "error")
        return ComplianceReport(compliant=not self.violations, violations=self.violations)
