"""A reservation of 0 neither waits for its key's row lock nor is summed (migration 0006).

Found by `make reliability`'s soak: every evaluation of a budget policy whose cost could
not be estimated held a 0 reservation for 10 minutes; each one locked the team key's row
and summed every open hold of the key inside the lock, so the key's throughput fell as
the holds piled up (336 -> 71 evaluations/s in three minutes, p99 over 2 s).
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

KEY = "team:zero"


def _payload(rid: str, amount: float, *, now: float) -> str:
    return json.dumps(
        {
            "now": now,
            "record": True,
            "grace": 86400,
            "rates": [],
            "budgets": [{"key": KEY, "since": "2000-01-01"}],
            "reserve": {"id": rid, "amount": amount, "expires_at": now + 600, "keys": [KEY]},
        }
    )


async def _fetch(conn: psycopg.AsyncConnection[Any], rid: str, amount: float, now: float) -> Any:
    cur = await conn.execute("SELECT usage_fetch(%s::jsonb)", (_payload(rid, amount, now=now),))
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def test_a_zero_hold_does_not_wait_for_a_held_lock(pg_pool: AsyncConnectionPool[Any]) -> None:
    now = time.time()
    async with pg_pool.connection() as holder, pg_pool.connection() as other:
        # A hold of 1 in an open transaction keeps the key's row locked.
        await holder.execute("BEGIN")
        await _fetch(holder, "held", 1.0, now)
        # A lock wait would end in LockNotAvailable after 1 s instead of hanging the test.
        await other.execute("SET lock_timeout = '1s'")
        # A 0 hold goes through and reads the committed state (the open hold is not
        # committed yet, so it is not seen).
        assert (await _fetch(other, "zero", 0.0, now))["budgets"] == [0]
        # A hold > 0 still waits for the lock (so holds > 0 never overshoot together).
        with pytest.raises(psycopg.errors.LockNotAvailable):
            await _fetch(other, "second", 2.0, now)
        await holder.execute("COMMIT")
        assert (await _fetch(other, "third", 0.0, now))["budgets"] == [1.0]


async def test_zero_holds_add_nothing_and_are_still_settled(
    pg_pool: AsyncConnectionPool[Any],
) -> None:
    now = time.time()
    async with pg_pool.connection() as conn:
        for i in range(50):
            await _fetch(conn, f"z{i}", 0.0, now)
        await _fetch(conn, "p", 3.0, now)
        assert (await _fetch(conn, "z-last", 0.0, now))["budgets"] == [3.0]
        # A 0 hold is remembered: its settlement knows its keys and records the spend.
        cur = await conn.execute("SELECT usage_settle('z7', 0.5, CURRENT_DATE)")
        row = await cur.fetchone()
        assert row is not None
        assert row[0] == [KEY]
        assert (await _fetch(conn, "z-after", 0.0, now))["budgets"] == [3.5]
