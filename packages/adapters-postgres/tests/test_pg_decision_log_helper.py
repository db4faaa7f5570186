"""The decision log's link helper: batches linked in a child process give the chain linking
here gives, and a helper that dies, hangs or is slow loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from policy_core.ports import DecisionRecord
from policy_core.services import ChainWriter, verify_records
from policy_core.services.decision_chain import GENESIS
from policy_core.testing import decision_record
from policy_postgres import PostgresDecisionLog
from policy_postgres._linker import Batch, LinkHelper, link_lines, records_of
from policy_postgres.spool import encode_line
from psycopg_pool import AsyncConnectionPool

WEIRD = {"prompt": "a\\b \u0000 nul", "n": 1e20, "neg": -0.0, "nested": [{"x": None}]}


def records(prefix: str, n: int) -> list[DecisionRecord]:
    return [decision_record(f"{prefix}{i}", context={"i": i, **WEIRD}) for i in range(n)]


async def stored_chain(log: PostgresDecisionLog) -> list[DecisionRecord]:
    return [r async for r in log.chain_records()]


def test_link_lines_is_chain_writer_link_and_composes() -> None:
    recs = records("r", 40)
    lines = [encode_line(r) for r in recs]
    chain = ChainWriter("w")
    expected = [chain.link(r) for r in recs]
    empty, seq, head = link_lines("w", 0, GENESIS, [])
    assert (empty.count, empty.lines, seq, head) == (0, b"", 0, GENESIS)
    batch, seq, head = link_lines("w", 0, GENESIS, lines)
    assert (seq, head) == (chain.seq, chain.head)
    assert records_of(batch) == expected
    # In slices, passing (seq, head) along: the same batch.
    parts: list[Batch] = []
    s, h = 0, GENESIS
    for start in range(0, 40, 16):
        part, s, h = link_lines("w", s, h, lines[start : start + 16])
        parts.append(part)
    assert b"".join(p.lines for p in parts) == batch.lines
    assert (s, h) == (seq, head)
    assert verify_records(expected).ok


async def test_helper_links_as_this_process_does() -> None:
    helper = LinkHelper()
    helper.start()
    try:
        assert await helper.ready()
        lines = [encode_line(r) for r in records("h", 300)]
        answer = await helper.link("w", 7, "sha256:" + "1" * 64, lines)
        assert answer is not None
        assert answer == link_lines("w", 7, "sha256:" + "1" * 64, lines)
        assert helper.linked == 300
    finally:
        await helper.close()
    assert helper.pid is None


async def test_stored_chains_with_and_without_helper_are_identical(
    pg_pool: AsyncConnectionPool[Any], tmp_path: Path
) -> None:
    recs = records("same", 500)
    chains = []
    for name, helper in (("inline", False), ("helper", True)):
        log = PostgresDecisionLog(
            pg_pool,
            spool_path=tmp_path / name,
            writer=f"w-{name}",
            link_helper=helper,
            helper_min_batch=1,
            batch_size=100,
        )
        await log.start()
        if log.helper is not None:
            assert await log.helper.ready()
        for r in recs:
            log.append(r)
        await log.drain()
        if log.helper is not None:
            assert log.helper.linked == 500
        await log.close()
        chains.append(log)
    stored = await stored_chain(chains[0])
    assert verify_records(stored).ok
    by_writer: dict[str, list[tuple[int, str, str]]] = {}
    for r in stored:
        assert r.chain is not None
        by_writer.setdefault(r.chain.writer, []).append(
            (r.chain.seq, r.request_id, r.context_digest)
        )
    inline, helper = by_writer["w-inline"], by_writer["w-helper"]
    assert len(inline) == len(helper) == 500
    assert inline == helper  # same seqs, same records, same digests
    assert [seq for seq, _, _ in helper] == list(range(1, 501))


async def test_a_killed_helper_falls_back_inline_and_loses_nothing(
    pg_pool: AsyncConnectionPool[Any], tmp_path: Path
) -> None:
    log = PostgresDecisionLog(
        pg_pool, spool_path=tmp_path / "s", link_helper=True, helper_min_batch=1, batch_size=50
    )
    await log.start()
    helper = log.helper
    assert helper is not None
    assert await helper.ready()
    recs = records("k", 400)
    for r in recs[:200]:
        log.append(r)
    await log.drain()
    assert helper.linked == 200
    pid = helper.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    for r in recs[200:]:
        log.append(r)
    await log.drain()
    await log.close()
    assert helper.failures == 1
    stored = await stored_chain(log)
    assert sorted(r.request_id for r in stored) == sorted(r.request_id for r in recs)
    report = verify_records(stored)
    assert report.ok, report.problems
    assert report.writers == 1


async def test_a_hung_helper_times_out_and_loses_nothing(
    pg_pool: AsyncConnectionPool[Any], tmp_path: Path
) -> None:
    helper = LinkHelper(timeout=0.5)
    log = PostgresDecisionLog(
        pg_pool, spool_path=tmp_path / "s", link_helper=helper, helper_min_batch=1
    )
    await log.start()
    assert await helper.ready()
    pid = helper.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        for r in records("hang", 100):
            log.append(r)
        await log.drain()
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed on the timeout
            os.kill(pid, signal.SIGCONT)
    await log.close()
    assert helper.failures == 1
    assert helper.linked == 0
    stored = await stored_chain(log)
    assert len(stored) == 100
    assert verify_records(stored).ok


class SlowHelper(LinkHelper):
    """Answers late, so that appends overflow the queue while a batch is out."""

    async def link(
        self, writer: str, seq: int, head: str, lines: list[bytes]
    ) -> tuple[Batch, int, str] | None:
        await asyncio.sleep(0.2)
        return await super().link(writer, seq, head, lines)


async def test_backpressure_while_a_batch_is_out_keeps_one_chain(
    pg_pool: AsyncConnectionPool[Any], tmp_path: Path
) -> None:
    helper = SlowHelper()
    log = PostgresDecisionLog(
        pg_pool,
        spool_path=tmp_path / "s",
        link_helper=helper,
        helper_min_batch=1,
        queue_size=40,
        batch_size=30,
    )
    await log.start()
    assert await helper.ready()
    recs = records("bp", 600)
    for i, r in enumerate(recs):
        log.append(r)
        if i % 10 == 0:
            await asyncio.sleep(0.005)  # the writer takes a batch and waits for the helper
    await log.drain()
    counters = log.counters()
    await log.close()
    assert counters.backpressure > 0
    assert helper.linked > 0
    stored = await stored_chain(log)
    assert sorted(r.request_id for r in stored) == sorted(r.request_id for r in recs)
    report = verify_records(stored)
    assert report.ok, report.problems
    assert report.writers == 1
    seqs = sorted(r.chain.seq for r in stored if r.chain)
    assert seqs == list(range(1, 601))
