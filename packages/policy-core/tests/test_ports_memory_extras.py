"""What the memory adapters do beyond the shared contracts: bounds, clocks, parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from policy_core.memory import (
    ManualClock,
    MemoryDecisionCache,
    MemoryDecisionLog,
    TieredDecisionCache,
    period_start,
    window_seconds,
)
from policy_core.model import Decision
from policy_core.testing import T0, decision_record


def _d(reason: str) -> Decision:
    return Decision(decision="allow", allowed=True, reason=reason)


async def test_cache_evicts_least_recently_used() -> None:
    cache = MemoryDecisionCache(ManualClock(T0), max_entries=2)
    await cache.set("a", _d("a"), 60)
    await cache.set("b", _d("b"), 60)
    assert await cache.get("a") is not None  # a is now the most recent
    await cache.set("c", _d("c"), 60)
    assert await cache.get("b") is None
    assert await cache.get("a") == _d("a")
    assert await cache.get("c") == _d("c")
    assert (len(cache), cache.evictions) == (2, 1)
    assert cache.hits == 3
    assert cache.misses == 1


async def test_cache_ignores_non_positive_ttl_and_bad_size() -> None:
    cache = MemoryDecisionCache(ManualClock(T0))
    await cache.set("k", _d("k"), 0)
    assert len(cache) == 0
    with pytest.raises(ValueError, match="max_entries"):
        MemoryDecisionCache(ManualClock(T0), max_entries=0)


async def test_memory_log_bound_drops_oldest() -> None:
    log = MemoryDecisionLog(max_records=2)
    for i in range(3):
        log.append(decision_record(f"r{i}"))
    assert len(log) == 2
    assert log.dropped == 1


def test_manual_clock() -> None:
    clock = ManualClock(T0)
    assert clock.now() == T0
    clock.advance(timedelta(minutes=1))
    clock.advance(0.5)
    assert clock.time() == T0.timestamp() + 60.5
    assert clock.monotonic() == clock.time()
    clock.set(T0 + timedelta(hours=1))
    assert clock.now() == T0 + timedelta(hours=1)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    assert clock.now().tzinfo is not None


@pytest.mark.parametrize(
    ("window", "seconds"), [("1s", 1), ("1m", 60), ("5m", 300), ("1h", 3600), ("1d", 86400)]
)
def test_window_seconds(window: str, seconds: int) -> None:
    assert window_seconds(window) == seconds


@pytest.mark.parametrize("window", ["", "0m", "1w", "m", "-1s", "1.5m"])
def test_window_seconds_rejects(window: str) -> None:
    with pytest.raises(ValueError, match="invalid window"):
        window_seconds(window)


def test_period_start() -> None:
    at = datetime(2026, 3, 14, 23, 30, tzinfo=UTC)
    assert period_start("day", at) == datetime(2026, 3, 14, tzinfo=UTC)
    assert period_start("month", at) == datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="period"):
        period_start("week", at)


class FailingCache:
    async def get(self, key: str) -> Decision | None:
        raise ConnectionError("down")

    async def set(self, key: str, decision: Decision, ttl_seconds: int) -> None:
        raise ConnectionError("down")

    async def clear(self) -> None:
        raise ConnectionError("down")


async def test_tiered_cache_backfills_l1_and_survives_l2_failures() -> None:
    clock = ManualClock(T0)
    l1, l2 = MemoryDecisionCache(clock), MemoryDecisionCache(clock)
    tiered = TieredDecisionCache(l1, l2, backfill_ttl=5)
    await l2.set("k", _d("shared"), 60)  # written by another instance
    assert await tiered.get("k") == _d("shared")
    assert await l1.get("k") == _d("shared")
    clock.advance(6)
    assert await l1.get("k") is None  # the backfill is short-lived
    assert await tiered.get("k") == _d("shared")
    broken = TieredDecisionCache(MemoryDecisionCache(clock), FailingCache())
    await broken.set("x", _d("x"), 60)
    assert await broken.get("x") == _d("x")
    assert await broken.get("missing") is None
    await broken.clear()
    assert broken.l2_errors == 3
