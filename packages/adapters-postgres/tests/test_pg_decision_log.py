"""PostgresDecisionLog beyond the contract: back-pressure, spool and replay, odd data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from policy_core.ports import HistoryQuery
from policy_core.testing import decision_record
from policy_postgres import PostgresDecisionLog
from policy_postgres.spool import Spool
from psycopg_pool import AsyncConnectionPool


async def count(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM decision_log")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_full_queue_spills_to_the_spool_and_nothing_is_lost(
    pg_pool: AsyncConnectionPool[Any], tmp_path: Path
) -> None:
    log = PostgresDecisionLog(pg_pool, spool_path=tmp_path / "spool", queue_size=50, batch_size=20)
    await log.start()
    for i in range(2_000):  # no await in between: the writer cannot keep up
        log.append(decision_record(f"bp{i}"))
    await log.drain()
    counters = log.counters()
    await log.close()
    assert counters.backpressure == 2_000 - 50
    assert counters.dropped == 0
    assert counters.replayed == counters.backpressure
    assert await count(pg_pool) == 2_000


async def test_spool_left_by_a_previous_run_is_replayed_once(
    pg_pool: AsyncConnectionPool[Any], tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.write([decision_record(f"old{i}") for i in range(30)], sync=True)
    spool.close()
    # An interrupted replay (its records partly stored already) is repeated first.
    first = PostgresDecisionLog(pg_pool, spool_path=tmp_path / "spool")
    await first.start()
    first.append(decision_record("old0"))  # stored now, and again in the spool
    await first.drain()
    await first.close()
    assert await count(pg_pool) == 30
    replay = Spool(tmp_path / "spool")
    replay.write([decision_record(f"old{i}") for i in range(10, 40)], sync=True)
    replay.close()
    (tmp_path / "spool").rename(tmp_path / "spool.replay")
    (tmp_path / "spool").write_bytes(
        msgspec.json.encode(decision_record("new"))
        + b"\n"
        # and a line torn by a crash mid-write
        + b'{"request_id": "torn-by-a-cra'
    )
    second = PostgresDecisionLog(pg_pool, spool_path=tmp_path / "spool")
    await second.start()
    await second.drain()
    await second.close()
    assert second.counters().corrupt_spool_lines == 1
    assert await count(pg_pool) == 41
    assert not (tmp_path / "spool").exists()
    assert not (tmp_path / "spool.replay").exists()


async def test_unreachable_database_spools_and_close_keeps_everything(tmp_path: Path) -> None:
    # A pool that was never opened fails every checkout, like a server that is down.
    dead: AsyncConnectionPool[Any] = AsyncConnectionPool(
        "postgresql://nobody@127.0.0.1:1/none", open=False
    )
    log = PostgresDecisionLog(dead, spool_path=tmp_path / "spool", retry_interval=60)
    await log.start()
    for i in range(500):
        log.append(decision_record(f"d{i}"))
    await log.flush()  # returns: spooled counts as durable
    counters = log.counters()
    assert counters.available is False
    assert counters.outages == 1
    assert counters.spooled == 500
    for i in range(500, 600):
        log.append(decision_record(f"d{i}"))
    await log.close()
    lines = (tmp_path / "spool").read_bytes().splitlines()
    assert len(lines) == 600


async def test_odd_strings_round_trip(pg_pool: AsyncConnectionPool[Any], tmp_path: Path) -> None:
    log = PostgresDecisionLog(pg_pool, spool_path=tmp_path / "spool")
    await log.start()
    context = {
        "llm": {"prompt": 'tab\there "quotes" back\\slash \\u0000 not a NUL, ünïcode ✓ 🎉'},
        "nul": "a\x00b",
        "newline": "line1\nline2\r\n",
    }
    log.append(decision_record("odd", context=context))
    await log.drain()
    (record,) = (await log.history(HistoryQuery(request_id="odd"))).items
    await log.close()
    assert record.context["llm"] == context["llm"]
    assert record.context["newline"] == context["newline"]
    assert record.context["nul"] == "a\ufffdb"  # jsonb cannot hold NUL
    assert log.counters().rejected == 0


async def test_flush_needs_a_started_log(pg_pool: AsyncConnectionPool[Any], tmp_path: Path) -> None:
    log = PostgresDecisionLog(pg_pool, spool_path=tmp_path / "spool")
    log.append(decision_record("early"))
    with pytest.raises(RuntimeError, match="start"):
        await log.flush()
    await log.start()
    await log.flush()
    await log.close()
    assert await count(pg_pool) == 1


async def test_records_of_several_months_get_partitions(
    pg_pool: AsyncConnectionPool[Any], tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    log = PostgresDecisionLog(pg_pool, spool_path=tmp_path / "spool")
    await log.start()
    for month in (1, 2, 12):
        log.append(decision_record(f"m{month}", at=datetime(2026, month, 15, tzinfo=UTC)))
    await log.drain()
    await log.close()
    async with pg_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.relname, count(l.*) FROM decision_log l"
            " JOIN pg_class c ON c.oid = l.tableoid GROUP BY 1 ORDER BY 1"
        )
        rows = await cur.fetchall()
    assert rows == [
        ("decision_log_2026_01", 1),
        ("decision_log_2026_02", 1),
        ("decision_log_2026_12", 1),
    ]


async def test_values_json_cannot_hold_are_stored_as_text(
    pg_pool: AsyncConnectionPool[Any], tmp_path: Path
) -> None:
    log = PostgresDecisionLog(pg_pool, spool_path=tmp_path / "spool")
    await log.start()
    log.append(decision_record("odd-types", context={"when": {1, 2}.__class__, "n": 1}))
    log.append(decision_record("fine"))
    await log.drain()
    (record,) = (await log.history(HistoryQuery(request_id="odd-types"))).items
    await log.close()
    assert record.context == {"when": "<class 'set'>", "n": 1}
    assert log.counters().written == 2


@pytest.mark.parametrize("first_batch", [True, False], ids=["first-batch", "later-batch"])
async def test_a_refused_record_is_rejected_alone_and_the_writer_goes_on(
    pg_pool: AsyncConnectionPool[Any], tmp_path: Path, first_batch: bool
) -> None:
    """PostgreSQL refuses a record (a NaN latency is JSON null, the column is NOT NULL):
    that record alone is rejected, its batch and the batches after it are stored. In the
    first batch, the failed transaction also took the staging table it created with it."""
    log = PostgresDecisionLog(pg_pool, spool_path=tmp_path / "spool")
    await log.start()
    if not first_batch:
        log.append(decision_record("before"))
        await log.flush()
    log.append(decision_record("good-1"))
    log.append(decision_record("nan", latency_ms=float("nan")))
    log.append(decision_record("good-2"))
    await log.flush()
    log.append(decision_record("after"))
    await log.drain()
    counters = log.counters()
    await log.close()
    assert counters.rejected == 1
    assert counters.written == (4 if not first_batch else 3)
    async with pg_pool.connection() as conn:
        cur = await conn.execute("SELECT request_id FROM decision_log ORDER BY request_id")
        stored = [r[0] for r in await cur.fetchall()]
    assert stored == sorted(["good-1", "good-2", "after"] + ([] if first_batch else ["before"]))
    kept = Spool(tmp_path / "spool").rejected_path.read_text()
    assert '"request_id":"nan"' in kept
