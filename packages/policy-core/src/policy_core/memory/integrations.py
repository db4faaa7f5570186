"""In-memory stand-ins for the integration ports (tests, embedding, offline use).

MemoryShield, MemoryCostOps and MemoryGovernance (defined in
policy_core.integrations, re-exported here) are the real call logic (guard,
breaker, caches, decoding) over a FakeService that simulates the service and
injects latency and faults.
"""

from __future__ import annotations

from collections.abc import Sequence

from policy_core.integrations import (
    FAULTS,
    FakeService,
    MemoryCostOps,
    MemoryGovernance,
    MemoryShield,
)
from policy_core.ports import DecisionRecord, PolicyRecord

__all__ = [
    "FAULTS",
    "FakeService",
    "MemoryCostOps",
    "MemoryEdgePublisher",
    "MemoryGovernance",
    "MemoryGovernanceSink",
    "MemoryShield",
]


class MemoryGovernanceSink:
    """Collects submitted records in a list."""

    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []

    def submit(self, record: DecisionRecord) -> None:
        self.records.append(record)


class MemoryEdgePublisher:
    """Remembers every published set."""

    def __init__(self) -> None:
        self.published: list[tuple[str, tuple[PolicyRecord, ...]]] = []

    async def publish(self, policy_set: str, policies: Sequence[PolicyRecord]) -> None:
        self.published.append((policy_set, tuple(policies)))
