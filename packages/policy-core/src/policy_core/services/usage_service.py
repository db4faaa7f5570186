"""UsageService: recording spend for the `budget.spent` fact, and settling reservations."""

from __future__ import annotations

import math
from datetime import datetime

from policy_core.ports import UsageStore

__all__ = ["UsageService"]


class UsageService:
    """Thin use case over a UsageStore, validating what the APIs pass in."""

    def __init__(self, usage: UsageStore) -> None:
        self._usage = usage

    async def record_spend(self, key: str, usd: float, at: datetime | None = None) -> None:
        """Add `usd` (finite, >= 0) of spend to `key` at `at` (now when None)."""
        if not key:
            raise ValueError("a usage key is required, e.g. 'user:u1' or 'team:t1'")
        if not math.isfinite(usd) or usd < 0:
            raise ValueError(f"spend must be a finite number >= 0, got {usd!r}")
        if at is not None and at.tzinfo is None:
            raise ValueError("give the time with a timezone (RFC 3339), e.g. 2026-03-14T12:00:00Z")
        await self._usage.record_spend(key, float(usd), at)

    async def settle(self, reservation_id: str, usd: float) -> tuple[str, ...] | None:
        """Replace reservation `reservation_id` by the actual cost `usd` (spec 7.3).

        The keys charged, or None when the reservation is unknown, already
        settled, or expired more than a day ago.
        """
        if not reservation_id:
            raise ValueError("a reservation id is required (decision.reservation.id)")
        if not math.isfinite(usd) or usd < 0:
            raise ValueError(f"spend must be a finite number >= 0, got {usd!r}")
        return await self._usage.settle(reservation_id, float(usd))

    async def release(self, reservation_id: str) -> bool:
        """Drop a reservation without charging it (the call was not made); False when unknown."""
        return await self._usage.release(reservation_id)
