"""In-memory usage counters: sliding-window request counts and spend per UTC day/month."""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from policy_core.clock import SystemClock
from policy_core.ports import Clock, FactRequest, Reservation

__all__ = ["SETTLE_GRACE_SECONDS", "MemoryUsageStore", "period_start", "window_seconds"]

_WINDOW = re.compile(r"^([1-9][0-9]*)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST = 86400 * 31  # nothing older is ever asked for; pruned
#: How long a reservation past its expiry is remembered, so that a late settlement still charges.
SETTLE_GRACE_SECONDS = 86400


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
    """A UsageStore for one process; `clock` defaults to the system clock.

    Exact within the process (each call runs without an await in between);
    nothing is shared with another process or survives a restart.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._hits: dict[str, list[float]] = defaultdict(list)  # sorted epoch seconds
        self._spend: dict[str, list[tuple[float, float]]] = defaultdict(list)
        # reservation id -> (amount, keys, expires epoch); key -> its reservation ids
        self._reserved: dict[str, tuple[float, tuple[str, ...], float]] = {}
        self._by_key: dict[str, set[str]] = defaultdict(set)
        self._pruned = 0.0  # when forgotten reservations were last dropped

    async def fetch(
        self,
        requests: Sequence[FactRequest],
        *,
        record: bool = True,
        reserve: Reservation | None = None,
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
                    out[req] = self._spent(str(req[1]), str(req[2]), now)
            except ValueError:
                continue  # left out: the engine reports the missing fact as an error
        if reserve is not None and record:
            self._prune(now)
            keys = tuple(dict.fromkeys(reserve.keys))
            self._reserved[reserve.id] = (
                float(reserve.amount),
                keys,
                reserve.expires_at.timestamp(),
            )
            for key in keys:
                self._by_key[key].add(reserve.id)
        return out

    async def record_spend(self, key: str, usd: float, at: datetime | None = None) -> None:
        if usd < 0:
            raise ValueError(f"spend must be >= 0, got {usd!r}")
        when = (at or self._clock.now()).timestamp()
        bisect.insort(self._spend[key], (when, float(usd)))

    async def settle(self, reservation_id: str, usd: float) -> tuple[str, ...] | None:
        if usd < 0:
            raise ValueError(f"spend must be >= 0, got {usd!r}")
        self._prune(self._clock.time())
        held = self._drop(reservation_id)
        if held is None:
            return None
        for key in held:
            await self.record_spend(key, usd)
        return held

    async def release(self, reservation_id: str) -> bool:
        return self._drop(reservation_id) is not None

    def _drop(self, reservation_id: str) -> tuple[str, ...] | None:
        held = self._reserved.pop(reservation_id, None)
        if held is None:
            return None
        for key in held[1]:
            ids = self._by_key.get(key)
            if ids is not None:
                ids.discard(reservation_id)
                if not ids:
                    del self._by_key[key]
        return held[1]

    def _prune(self, now: float) -> None:
        if now - self._pruned < 60:
            return  # at most once a minute: a sweep is linear in the reservations held
        self._pruned = now
        forgotten = [
            rid
            for rid, (_, _, expires) in self._reserved.items()
            if expires <= now - SETTLE_GRACE_SECONDS
        ]
        for rid in forgotten:
            self._drop(rid)

    def _record_hit(self, key: str, now: float) -> None:
        hits = self._hits[key]
        bisect.insort(hits, now)
        cut = bisect.bisect_right(hits, now - _LONGEST)
        if cut:
            del hits[:cut]

    def _count(self, key: str, after: float) -> int:
        hits = self._hits.get(key, [])
        return len(hits) - bisect.bisect_right(hits, after)

    def _spent(self, key: str, period: str, now: float) -> float:
        start = period_start(period, self._clock.now()).timestamp()
        settled = sum(usd for when, usd in self._spend.get(key, []) if when >= start)
        held = 0.0
        for rid in self._by_key.get(key, ()):
            amount, _, expires = self._reserved[rid]
            if expires > now:  # an open reservation counts in the current day and month
                held += amount
        return settled + held
