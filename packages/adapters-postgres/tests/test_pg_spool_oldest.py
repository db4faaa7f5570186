"""The spool knows the time of its oldest waiting record
(`llm_policy_decision_log_spool_oldest_age_seconds`), across replays and restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, strategies as st
from policy_core.testing import decision_record
from policy_postgres import PostgresDecisionLog
from policy_postgres.spool import Spool
from psycopg_pool import AsyncConnectionPool

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T + timedelta(minutes=minutes)


def test_an_empty_spool_has_no_oldest_record(tmp_path: Path) -> None:
    assert Spool(tmp_path / "spool").oldest() is None


@given(st.lists(st.lists(st.integers(-10_000, 10_000), min_size=1, max_size=5), min_size=1))
def test_oldest_is_the_earliest_record_written_in_any_order(batches: list[list[int]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "spool")
        n = 0
        for batch in batches:
            spool.write([decision_record(f"r{(n := n + 1)}", at=at(m)) for m in batch])
        assert spool.oldest() == at(min(m for batch in batches for m in batch))
        spool.close()


def test_replay_moves_the_oldest_and_its_end_forgets_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.write([decision_record("a", at=at(5)), decision_record("b", at=at(1))], sync=True)
    assert len(spool.begin_replay()) == 2
    assert spool.oldest() == at(1)  # still waiting, now in spool.replay
    spool.write([decision_record("c", at=at(9))], sync=True)  # spooled during the replay
    assert spool.oldest() == at(1)
    spool.end_replay()
    assert spool.oldest() == at(9)
    assert len(spool.begin_replay()) == 1
    spool.end_replay()
    assert spool.oldest() is None


def test_a_spool_left_by_an_earlier_run_reads_its_first_record(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool")
    first.write([decision_record("a", at=at(3))], sync=True)
    first.begin_replay()  # interrupted: spool.replay stays
    first.write([decision_record("b", at=at(7))])
    first.close()
    again = Spool(tmp_path / "spool")
    assert again.oldest() == at(3)
    again.begin_replay()
    again.end_replay()
    assert again.oldest() == at(7)


def test_a_torn_first_line_is_skipped(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool")
    first.write([decision_record("a", at=at(4))], sync=True)
    first.close()
    content = (tmp_path / "spool").read_bytes()
    (tmp_path / "spool").write_bytes(b'{"request_id": "torn\n' + content)
    assert Spool(tmp_path / "spool").oldest() == at(4)


async def test_counters_report_the_oldest_spooled_record(tmp_path: Path) -> None:
    dead: AsyncConnectionPool[Any] = AsyncConnectionPool(
        "postgresql://nobody@127.0.0.1:1/none", open=False
    )
    log = PostgresDecisionLog(dead, spool_path=tmp_path / "spool", retry_interval=60)
    assert log.counters().spool_oldest is None
    await log.start()
    log.append(decision_record("late", at=at(8)))
    log.append(decision_record("early", at=at(2)))
    await log.flush()  # the database is down: both go to the spool
    assert log.counters().spool_oldest == at(2)
    await log.close()
