"""In-memory RateLimiter: counters of one process, on the clock's monotonic time.

The three strategies of the `limits` library (which the Redis limiter uses),
with its semantics: a fixed window starts at a caller's first request; a
moving window admits a request when fewer than `amount` were admitted in the
last period; a sliding-window counter weighs the previous aligned window's
count by how much of it the current period still covers. Nothing runs in the
background: entries past their window are swept every few thousand hits.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

from policy_core.clock import SystemClock
from policy_core.ports import Clock, RateDecision, RateLimit
from policy_core.ratelimits import RateLimits

__all__ = ["MemoryRateLimiter", "RateStrategy"]

RateStrategy = Literal["fixed-window", "moving-window", "sliding-window"]

_SWEEP_EVERY = 4096


class MemoryRateLimiter:
    """Limits per route class (from `parse_rate_limits`), counted per identity."""

    def __init__(
        self,
        limits: RateLimits,
        *,
        strategy: RateStrategy = "fixed-window",
        clock: Clock | None = None,
    ) -> None:
        if strategy not in ("fixed-window", "moving-window", "sliding-window"):
            raise ValueError(f"unknown rate-limit strategy {strategy!r}")
        self._limits = {name: items for name, items in limits.items() if items}
        self._strategy = strategy
        self._clock = clock or SystemClock()
        # fixed: [expires_at, count]; moving: deque of admitted times;
        # sliding: [window index, previous count, current count].
        self._fixed: dict[tuple[str, str, RateLimit], list[float]] = {}
        self._moving: dict[tuple[str, str, RateLimit], deque[float]] = {}
        self._sliding: dict[tuple[str, str, RateLimit], list[float]] = {}
        self._hits = 0

    async def hit(self, route_class: str, identity: str) -> RateDecision | None:
        items = self._limits.get(route_class)
        if items is None:
            return None
        now = self._clock.monotonic()
        self._hits += 1
        if self._hits % _SWEEP_EVERY == 0:
            self._sweep(now)
        for item in items:
            key = (route_class, identity, item)
            if self._strategy == "fixed-window":
                refusal = self._fixed_hit(key, item, now)
            elif self._strategy == "moving-window":
                refusal = self._moving_hit(key, item, now)
            else:
                refusal = self._sliding_hit(key, item, now)
            if refusal is not None:
                return refusal
        return None

    async def ping(self) -> bool:
        return True

    def _fixed_hit(
        self, key: tuple[str, str, RateLimit], item: RateLimit, now: float
    ) -> RateDecision | None:
        entry = self._fixed.get(key)
        if entry is None or entry[0] <= now:
            entry = self._fixed[key] = [now + item.seconds, 0]
        entry[1] += 1  # counted even when refused, as an INCR in Redis is
        if entry[1] <= item.amount:
            return None
        return _refused(item, 0, entry[0] - now)

    def _moving_hit(
        self, key: tuple[str, str, RateLimit], item: RateLimit, now: float
    ) -> RateDecision | None:
        admitted = self._moving.get(key)
        if admitted is None:
            admitted = self._moving[key] = deque()
        horizon = now - item.seconds
        while admitted and admitted[0] <= horizon:
            admitted.popleft()
        if len(admitted) < item.amount:
            admitted.append(now)
            return None
        return _refused(item, 0, admitted[0] + item.seconds - now)

    def _sliding_hit(
        self, key: tuple[str, str, RateLimit], item: RateLimit, now: float
    ) -> RateDecision | None:
        period = item.seconds
        window = now // period
        entry = self._sliding.get(key)
        if entry is None or entry[0] < window - 1:
            entry = self._sliding[key] = [window, 0, 0]
        elif entry[0] == window - 1:
            entry[:] = [window, entry[2], 0]
        elapsed = now - window * period
        previous, current = entry[1], entry[2]
        weighted = previous * (period - elapsed) / period + current
        if weighted + 1 <= item.amount:
            entry[2] = current + 1
            return None
        # The previous window's weight falls off linearly: wait for one request's worth.
        wait = period - elapsed
        if previous > 0:
            wait = min(wait, (weighted + 1 - item.amount) * period / previous)
        remaining = max(0, item.amount - math.ceil(weighted))
        return _refused(item, remaining, wait)

    def _sweep(self, now: float) -> None:
        self._fixed = {k: v for k, v in self._fixed.items() if v[0] > now}
        self._moving = {k: v for k, v in self._moving.items() if v and v[-1] > now - k[2].seconds}
        self._sliding = {k: v for k, v in self._sliding.items() if v[0] >= now // k[2].seconds - 1}


def _refused(item: RateLimit, remaining: int, reset_in: float) -> RateDecision:
    return RateDecision(False, item.amount, remaining, max(1, math.ceil(reset_in)))
