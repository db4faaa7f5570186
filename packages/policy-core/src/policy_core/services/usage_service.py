"""UsageService: recording spend for the `budget.spent` fact, and settling reservations."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime

import msgspec

from policy_core.ports import UsageEvent, UsageSink, UsageStore

__all__ = ["UsageService"]


class UsageService:
    """Thin use case over a UsageStore, validating what the APIs pass in."""

    def __init__(self, usage: UsageStore, sink: UsageSink | None = None) -> None:
        self._usage = usage
        # CostOps `track` (durable outbox): every recorded spend is also reported there.
        self._sink = sink

    async def record_spend(
        self,
        key: str,
        usd: float,
        at: datetime | None = None,
        *,
        event: UsageEvent | None = None,
    ) -> None:
        """Add `usd` (finite, >= 0) of spend to `key` at `at` (now when None).

        With a usage sink the spend is also queued for CostOps as `event`
        (its cost and time set to `usd` and `at`; a request id made up when
        it has none), after the store took it.
        """
        if not key:
            raise ValueError("a usage key is required, e.g. 'user:u1' or 'team:t1'")
        if not math.isfinite(usd) or usd < 0:
            raise ValueError(f"spend must be a finite number >= 0, got {usd!r}")
        if at is not None and at.tzinfo is None:
            raise ValueError("give the time with a timezone (RFC 3339), e.g. 2026-03-14T12:00:00Z")
        await self._usage.record_spend(key, float(usd), at)
        self._track(usd, at, event)

    def _track(
        self, usd: float, at: datetime | None, event: UsageEvent | None, rid: str = ""
    ) -> None:
        """Queue the recorded spend for CostOps `track` (when a usage sink is configured)."""
        if self._sink is None:
            return
        when = at or datetime.now(UTC)
        if event is None:
            event = UsageEvent(
                request_id=rid or os.urandom(16).hex(), cost=float(usd), timestamp=when
            )
        else:
            event = msgspec.structs.replace(
                event,
                request_id=event.request_id or rid or os.urandom(16).hex(),
                cost=float(usd),
                timestamp=when,
            )
        self._sink.submit(event)

    async def settle(
        self, reservation_id: str, usd: float, *, event: UsageEvent | None = None
    ) -> tuple[str, ...] | None:
        """Replace reservation `reservation_id` by the actual cost `usd` (spec 7.3).

        The keys charged, or None when the reservation is unknown, already
        settled, or expired more than a day ago. A settled spend is reported to
        the usage sink like a recorded one (request id: the reservation's, unless
        `event` has one).
        """
        if not reservation_id:
            raise ValueError("a reservation id is required (decision.reservation.id)")
        if not math.isfinite(usd) or usd < 0:
            raise ValueError(f"spend must be a finite number >= 0, got {usd!r}")
        keys = await self._usage.settle(reservation_id, float(usd))
        if keys is not None:
            self._track(usd, None, event, reservation_id)
        return keys

    async def release(self, reservation_id: str) -> bool:
        """Drop a reservation without charging it (the call was not made); False when unknown."""
        return await self._usage.release(reservation_id)
