"""A process killed with SIGKILL loses no decision-log record (issue 13): the journal.

The child process is a real one, killed by a real SIGKILL while records it
appended (decisions it would have answered) are still queued in its memory; the
next holder of its spool slot ships them from the journal, and the hash chains
of both writers still verify.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from policy_core.services import ChainVerifier
from policy_core.testing import decision_record
from policy_postgres import PostgresDecisionLog
from policy_postgres.journal import segments
from psycopg_pool import AsyncConnectionPool

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from policy_core.testing import decision_record
    from policy_postgres import PostgresDecisionLog, open_pool

    async def main(url, schema, spool, stored, queued):
        pool = await open_pool(url, schema=schema, max_size=2)
        log = PostgresDecisionLog(pool, spool_path=spool, writer="killed")
        await log.start()
        for i in range(stored):
            log.append(decision_record(f"k{i}", context={"i": i}))
        await log.drain()  # these are in PostgreSQL, their journal segment gone
        for i in range(stored, stored + queued):  # no await: all still queued
            log.append(decision_record(f"k{i}", context={"i": i, "prompt": "hi"}))
        print("appended", flush=True)  # the decisions would be answered now
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
    """
)


async def _ids(pool: AsyncConnectionPool[Any]) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT request_id FROM decision_log")
        return [r[0] for r in await cur.fetchall()]


async def _duplicates(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM decision_log_duplicates")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def _kill_after_append(url: str, schema: str, spool: Path, stored: int, queued: int) -> None:
    args = [sys.executable, "-c", CHILD, url, schema, str(spool), str(stored), str(queued)]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "appended", f"the child did not get to append: {line!r}"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL


async def _schema(pool: AsyncConnectionPool[Any]) -> str:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT current_schema()")
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def test_records_of_a_killed_process_are_shipped_by_the_next_holder(
    pg_pool: AsyncConnectionPool[Any], pg_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "decisions-0"
    _kill_after_append(pg_url, await _schema(pg_pool), spool, stored=300, queued=1_500)
    assert sorted(await _ids(pg_pool)) == sorted(f"k{i}" for i in range(300))
    assert segments(spool), "the killed process left its journal"

    heir = PostgresDecisionLog(pg_pool, spool_path=spool, writer="heir")
    await heir.start()
    heir.append(decision_record("after", context={"i": -1}))
    await heir.drain()
    await heir.close()

    ids = await _ids(pg_pool)
    assert sorted(ids) == sorted([*(f"k{i}" for i in range(1_800)), "after"])
    assert await _duplicates(pg_pool) == 0  # the 300 stored ones were skipped, not re-linked
    assert segments(spool) == []
    verifier = ChainVerifier()
    async for record in heir.chain_records():
        verifier.feed(record)
    report = verifier.report()
    assert report.ok, report.problems
    assert (report.records, report.writers) == (1_801, 2)


async def test_a_clean_close_leaves_no_journal(
    pg_pool: AsyncConnectionPool[Any], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    log = PostgresDecisionLog(pg_pool, spool_path=spool)
    await log.start()
    for i in range(100):
        log.append(decision_record(f"c{i}"))
    assert segments(spool)  # written on append, before the writer ran
    await log.drain()
    # Stored: their segment is gone; the writer opened the next one (no request
    # creates a file), and idle flushes seal nothing.
    (current,) = segments(spool)
    assert current.stat().st_size == 0
    for _ in range(3):
        await log.flush()
        await asyncio.sleep(0.06)  # a flush interval
    assert segments(spool) == [current]
    await log.close()
    assert segments(spool) == []
    assert len(await _ids(pg_pool)) == 100
