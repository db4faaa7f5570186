"""In-memory stand-ins for the integration ports (tests and offline use)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from policy_core.ports import DecisionRecord, PolicyRecord

__all__ = ["MemoryEdgePublisher", "MemoryGovernanceSink", "StaticCostOracle", "StaticShieldScanner"]


class StaticShieldScanner:
    """Flags a prompt when it contains one of `threats` (case-insensitive substrings)."""

    def __init__(self, threats: Sequence[str] = ()) -> None:
        self._threats = [t.lower() for t in threats]
        self.calls = 0

    async def scan(self, text: str) -> dict[str, Any]:
        self.calls += 1
        found = [t for t in self._threats if t in text.lower()]
        return {"passed": not found, "score": 1.0 if found else 0.0, "threats": found}


class StaticCostOracle:
    """Prices every model at fixed USD rates per 1,000 tokens."""

    def __init__(self, input_per_1k: float = 0.001, output_per_1k: float = 0.002) -> None:
        self._in, self._out = input_per_1k, output_per_1k

    async def estimate(
        self, provider: str, model: str, prompt_tokens: int, max_tokens: int
    ) -> dict[str, Any]:
        cost = prompt_tokens / 1000 * self._in + max_tokens / 1000 * self._out
        return {"cost": round(cost, 10), "currency": "USD"}


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
