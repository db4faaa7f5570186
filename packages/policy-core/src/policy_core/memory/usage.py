"""In-memory usage counters: sliding-window request counts and spend per UTC day/month."""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from policy_core.clock import SystemClock
from policy_core.ports import Clock, FactRequest

__all__ = ["MemoryUsageStore", "period_start", "window_seconds"]

_WINDOW = re.compile(r"^([1-9][0-9]*)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST = 86400 * 31  # nothing older is ever asked for; pruned


def window_seconds(window: str) -> int:
    """'1s' -> 1, '5m' -> 300, '1h' -> 3600, '1d' -> 86400; ValueError otherwise."""
    m = _WINDOW.match(window)
    if m is None:
        raise ValueError(f"invalid window {window!r}; use a count and s, m, h or d, like '1m'")
    return int(m.group(1)) * _UNIT[m.group(2)]


def period_start(period: str, at: datetime) -> datetime:
    """Start (UTC) of the 'day' or 'month' containing `at`; ValueError for another period."""
    at = at.astimezone(UTC)
    if period == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"invalid budget period {period!r}; use 'day' or 'month'")


class MemoryUsageStore:
    """A UsageStore for one process; `clock` defaults to the system clock."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._hits: dict[str, list[float]] = defaultdict(list)  # sorted epoch seconds
        self._spend: dict[str, list[tuple[float, float]]] = defaultdict(list)

    async def fetch(
        self, requests: Sequence[FactRequest], *, record: bool = True
    ) -> dict[FactRequest, Any]:
        now = self._clock.time()
        rate_keys = {str(r[1]) for r in requests if r and r[0] == "rate_limit.count"}
        if record:
            for key in rate_keys:
                self._record_hit(key, now)
        extra = 0 if record else 1  # a dry run still counts itself, without recording
        out: dict[FactRequest, Any] = {}
        for req in requests:
            try:
                if req[0] == "rate_limit.count":
                    out[req] = self._count(str(req[1]), now - window_seconds(str(req[2]))) + extra
                elif req[0] == "budget.spent":
                    out[req] = self._spent(str(req[1]), str(req[2]))
            except ValueError:
                continue  # left out: the engine reports the missing fact as an error
        return out

    async def record_spend(self, key: str, usd: float, at: datetime | None = None) -> None:
        if usd < 0:
            raise ValueError(f"spend must be >= 0, got {usd!r}")
        when = (at or self._clock.now()).timestamp()
        bisect.insort(self._spend[key], (when, float(usd)))

    def _record_hit(self, key: str, now: float) -> None:
        hits = self._hits[key]
        bisect.insort(hits, now)
        cut = bisect.bisect_right(hits, now - _LONGEST)
        if cut:
            del hits[:cut]

    def _count(self, key: str, after: float) -> int:
        hits = self._hits.get(key, [])
        return len(hits) - bisect.bisect_right(hits, after)

    def _spent(self, key: str, period: str) -> float:
        start = period_start(period, self._clock.now()).timestamp()
        return sum(usd for when, usd in self._spend.get(key, []) if when >= start)
