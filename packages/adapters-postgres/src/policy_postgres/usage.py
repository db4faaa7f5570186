"""PostgresUsageStore: request counts, spend and reservations shared by a node's workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from policy_core.errors import StoreUnavailable
from policy_core.memory import SETTLE_GRACE_SECONDS, period_start, window_seconds
from policy_core.ports import Clock, FactRequest, Reservation
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from policy_postgres.errors import translate_errors

__all__ = ["FETCH_TIMEOUT_SECONDS", "PostgresUsageStore"]

# The longest an evaluation waits for its usage facts (then it fails per its fail mode).
FETCH_TIMEOUT_SECONDS = 2.0

_FETCH = b"SELECT usage_fetch(%s)"
_SETTLE = b"SELECT usage_settle(%s, %s, %s)"
_RELEASE = b"DELETE FROM usage_reservations WHERE id = %s"
_SPEND = (
    b"INSERT INTO usage_spend AS u (key, day, usd) VALUES (%s, %s, %s) "
    b"ON CONFLICT (key, day) DO UPDATE SET usd = u.usd + excluded.usd"
)


class PostgresUsageStore:
    """A UsageStore on the `usage_*` tables (migration 0004).

    Every `fetch` is one statement, the `usage_fetch` function: it locks the
    rows of the keys it counts or reserves on (in one order), records the
    request, counts every window, sums each budget (settled spend plus open
    reservations) and adds the reservation, so concurrent workers never see
    the same count or overshoot a budget, and the counts survive a restart.
    Times are epoch seconds of `clock` (the system clock by default; the
    workers of a node share it).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        clock: Clock | None = None,
        owns_pool: bool = False,
        timeout: float = FETCH_TIMEOUT_SECONDS,
    ) -> None:
        self._pool, self._clock = pool, clock
        self.owns_pool = owns_pool
        self._timeout = timeout

    async def close(self) -> None:
        if self.owns_pool:
            await self._pool.close()

    async def fetch(
        self,
        requests: Sequence[FactRequest],
        *,
        record: bool = True,
        reserve: Reservation | None = None,
    ) -> dict[FactRequest, Any]:
        now = self._now()
        at = datetime.fromtimestamp(now, UTC)
        rates: dict[str, dict[int, list[FactRequest]]] = {}
        budgets: dict[tuple[str, str], list[FactRequest]] = {}
        for req in requests:
            try:
                if req[0] == "rate_limit.count":
                    seconds = window_seconds(str(req[2]))
                    rates.setdefault(str(req[1]), {}).setdefault(seconds, []).append(req)
                elif req[0] == "budget.spent":
                    since = period_start(str(req[2]), at).date().isoformat()
                    budgets.setdefault((str(req[1]), since), []).append(req)
            except (ValueError, IndexError):
                continue  # left out: the engine reports the missing fact as an error
        if not rates and not budgets:
            return {}
        held = None
        if reserve is not None and record:
            held = {
                "id": reserve.id,
                "amount": float(reserve.amount),
                "expires_at": reserve.expires_at.timestamp(),
                "keys": list(dict.fromkeys(reserve.keys)),
            }
        payload = {
            "now": now,
            "record": record,
            "grace": SETTLE_GRACE_SECONDS,
            "rates": [{"key": k, "windows": list(w)} for k, w in rates.items()],
            "budgets": [{"key": k, "since": since} for k, since in budgets],
            "reserve": held,
        }
        # Bounded: an evaluation waits at most `timeout` for its facts, then its rules fail
        # as their policy's fail mode says. Without it an evaluation waited for the pool's
        # 10 s (PostgreSQL down) or for ever (network stalled): found by `make reliability`.
        try:
            async with (
                asyncio.timeout(self._timeout),
                translate_errors("read usage counters"),
                self._pool.connection() as conn,
            ):
                cur = await conn.execute(_FETCH, (Jsonb(payload),))
                row = await cur.fetchone()
        except TimeoutError:
            raise StoreUnavailable(
                f"PostgreSQL did not answer the usage counters within {self._timeout:g} s"
            ) from None
        assert row is not None
        answer = row[0]
        extra = 0 if record else 1  # a dry run still counts itself
        out: dict[FactRequest, Any] = {}
        for windows, counts in zip(rates.values(), answer["rates"], strict=True):
            for reqs, count in zip(windows.values(), counts, strict=True):
                out.update(dict.fromkeys(reqs, int(count) + extra))
        for reqs, value in zip(budgets.values(), answer["budgets"], strict=True):
            out.update(dict.fromkeys(reqs, float(value)))
        return out

    async def record_spend(self, key: str, usd: float, at: datetime | None = None) -> None:
        if usd < 0:
            raise ValueError(f"spend must be >= 0, got {usd!r}")
        day = (at or datetime.fromtimestamp(self._now(), UTC)).astimezone(UTC).date()
        async with translate_errors("record spend"), self._pool.connection() as conn:
            await conn.execute(_SPEND, (key, day, float(usd)))

    async def settle(self, reservation_id: str, usd: float) -> tuple[str, ...] | None:
        if usd < 0:
            raise ValueError(f"spend must be >= 0, got {usd!r}")
        day = datetime.fromtimestamp(self._now(), UTC).date()
        async with translate_errors("settle a reservation"), self._pool.connection() as conn:
            cur = await conn.execute(_SETTLE, (reservation_id, float(usd), day))
            row = await cur.fetchone()
        keys = row[0] if row is not None else None
        return tuple(keys) if keys else None

    async def release(self, reservation_id: str) -> bool:
        async with translate_errors("release a reservation"), self._pool.connection() as conn:
            cur = await conn.execute(_RELEASE, (reservation_id,))
        return bool(cur.rowcount > 0)

    def _now(self) -> float:
        return time.time() if self._clock is None else self._clock.time()
