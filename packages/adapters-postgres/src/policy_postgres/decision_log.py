"""PostgresDecisionLog: a decision log that never makes an evaluation wait and loses nothing.

`append` writes the record to the local journal (one `os.write`, see
policy_postgres.journal: it survives a SIGKILL of the process) and puts that
same line on an in-memory queue (bounded: beyond `queue_size` records go straight to the
spool file). A background task writes batches with COPY into a staging
table, then moves them into the partitioned `decision_log`, skipping request
ids already stored. When PostgreSQL is unreachable, batches go to the spool
file and are replayed once a probe succeeds. Counters expose all of it.

The writer shares the event loop with the requests, so it never holds it for
long: it links, encodes and sends a batch in slices and yields to the loop
once it has worked `_BUDGET` seconds (a batch of 2,000 linked in one go held
the loop for tens of milliseconds, the single deployment's p99). The budget
is time, not a count of records: on a loop busy with requests each yield
costs a whole turn of the loop, and a writer yielding every few records fell
behind its appends. When it is behind (`_BEHIND` batches queued) its turn is
as long as the loop kept it waiting (at least 8 ms, at most `_MAX_TURN`): on
an overloaded loop, where a turn of the requests lasts hundreds of ms, it then
still gets about half the loop, and the log keeps up (a fixed 8 ms turn left
it storing nothing for 20 s after an overloaded run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from policy_core.cursors import decode_cursor, encode_cursor
from policy_core.ports import (
    DecisionLogCounters,
    DecisionRecord,
    DecisionStats,
    HistoryQuery,
    Page,
)
from policy_core.services import ChainWriter
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from policy_postgres._connect import connect_args
from policy_postgres._linker import (
    Batch,
    LinkHelper,
    batch_of,
    join,
    link_lines,
    month_of,
    records_of,
)
from policy_postgres._records import COPY, copy_lines, from_row, instant
from policy_postgres._sql import sql
from policy_postgres.errors import UNAVAILABLE, translate_errors
from policy_postgres.journal import Journal
from policy_postgres.spool import Spool, encode_line

__all__ = ["DecisionLogCounters", "PostgresDecisionLog"]

_log = logging.getLogger(__name__)

# The writer's work between two yields to the event loop, in seconds (normal, behind);
# it checks the clock every `_SLICE` records (linking is ~11-30 µs a record, see
# docs/benchmarks.md). Behind: `_BEHIND` batches or more are queued.
_BUDGET = (0.002, 0.008)
_BEHIND = 2
_MAX_TURN = 0.2
_SLICE = 16
_COPY_CHUNK = 128 * 1024  # bytes of COPY data sent between two checks of the budget


class PostgresDecisionLog:
    """A DecisionLog (writer) and DecisionHistory (reader) on PostgreSQL. Call `start()` before use and `close()` at the end.

    `append` must be called from the event loop thread that ran `start`.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        spool_path: str | Path,
        owns_pool: bool = False,
        queue_size: int = 100_000,
        batch_size: int = 2_000,
        flush_interval: float = 0.05,
        retry_interval: float = 1.0,
        connect_timeout: float = 2.0,
        writer: str | None = None,
        journal: bool = True,
        link_helper: bool | LinkHelper = False,
        helper_min_batch: int = 64,
    ) -> None:
        self._pool = pool
        self.owns_pool = owns_pool
        self._spool = Spool(Path(spool_path))
        # Off (`journal=False`) only to measure what it costs: without it, a killed
        # process loses the records its writer had not stored yet.
        self._journal = Journal(Path(spool_path)) if journal else None
        self._journal_failed = False
        # Records wait for the writer as their journal lines (bytes): a queue of record
        # objects (a context is dozens of dicts and lists) was what the cyclic GC scanned
        # when the writer fell behind, full collections of 200-400 ms at 5,000/s that
        # slowed the worker further (docs/benchmarks.md, "Single-node tail").
        self._queue: deque[bytes] = deque()
        # The hash chain of this writer: records are linked as they leave the queue
        # (off the request path), in the order they were appended.
        self.chain = ChainWriter(writer)
        # Batches of `helper_min_batch` records or more are linked in a child process
        # (policy_postgres._linker), off this process's event loop and GIL.
        helper = LinkHelper() if link_helper is True else link_helper
        self._helper = helper or None
        self._helper_min = helper_min_batch
        self._linking = False  # a batch is out at the helper: the chain's next link is its
        self._held: list[bytes] = []  # lines spooled under backpressure meanwhile, to link after
        self._queue_size, self._batch = queue_size, batch_size
        self._interval, self._retry, self._timeout = flush_interval, retry_interval, connect_timeout
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection[Any] | None = None
        self._staging_on: AsyncConnection[Any] | None = None  # has the staging table
        self._closing = False
        self._flush_now = False
        self._down = False
        self._next_probe = 0.0
        self._months: set[tuple[int, int]] = set()  # (year, month) partitions made
        self._turn_ends = 0.0
        self._appended = self._settled = self._recovered = 0
        self._written = self._spooled = self._replayed = 0
        self._backpressure = self._dropped = self._rejected = self._outages = 0

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Start the writer (it first replays whatever an earlier run left in the spool)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="decision-log-writer")
            if self._helper is not None:
                self._helper.start()

    @property
    def helper(self) -> LinkHelper | None:
        """The process linking large batches (None: every batch is linked in this one)."""
        return self._helper

    async def close(self) -> None:
        """Write or spool everything queued, stop the writer, close an owned pool."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._queue:
            self._spool_batch(self._link_now(list(self._queue)))
            self._queue.clear()
        if self._helper is not None:
            await self._helper.close()
        self._spool.close()
        if self._journal is not None:
            # Every record is stored or fsynced to the spool now (unless it was dropped).
            self._journal.close(discard=self._dropped == 0)
        await self._close_connection()
        if self.owns_pool:
            await self._pool.close()

    # --- the port -----------------------------------------------------------

    def append(self, record: DecisionRecord) -> None:
        self._appended += 1
        line = encode_line(record)
        if self._journal is not None:
            try:
                self._journal.write(line)
            except OSError:
                self._journal.errors += 1
                if not self._journal_failed:
                    self._journal_failed = True
                    _log.exception("decision log: journal unwritable; a killed process may lose")
        if len(self._queue) < self._queue_size:
            self._queue.append(line)
            if len(self._queue) >= self._batch:
                self._wakeup.set()
            return
        # Queue full: the writer is behind. The spool keeps the record without waiting.
        self._backpressure += 1
        if self._linking:
            self._held.append(line)  # linked and spooled as soon as the helper answers
            return
        self._spool_batch(self._link_now([line]), sync=False)

    async def flush(self) -> None:
        target = self._appended + self._recovered
        while self._settled < target:
            if self._task is None or self._task.done():
                raise RuntimeError("the decision log is not running; call start() first")
            self._flush_now = True
            self._wakeup.set()
            self._progress.clear()
            await self._progress.wait()
        self._spool.sync()

    async def drain(self) -> None:
        """Wait until every appended record is in PostgreSQL (queue empty, spool replayed)."""
        await self.flush()
        while self._queue or self._spool.pending():
            self._flush_now = True
            self._wakeup.set()
            await asyncio.sleep(self._interval)

    def counters(self) -> DecisionLogCounters:
        return DecisionLogCounters(
            appended=self._appended,
            written=self._written,
            spooled=self._spooled,
            replayed=self._replayed,
            backpressure=self._backpressure,
            dropped=self._dropped,
            rejected=self._rejected,
            queued=len(self._queue),
            spool_bytes=self._spool.size_bytes(),
            spool_oldest=self._spool.oldest(),
            available=not self._down,
            outages=self._outages,
            corrupt_spool_lines=self._spool.corrupt_lines,
        )

    async def history(
        self, query: HistoryQuery, *, limit: int = 50, cursor: str | None = None
    ) -> Page[DecisionRecord]:
        limit = max(limit, 0)
        after = decode_cursor(cursor, str, str) if cursor else [None, None]
        params = {
            "request_id": query.request_id,
            "policy_id": query.policy_id,
            "decision": query.decision,
            "since": query.since,
            "until": query.until,
            "shadow_differs": query.shadow_differs,
            "after_at": instant(after[0]) if after[0] else None,
            "after_id": after[1],
            "limit": limit + 1,
        }
        async with translate_errors("read the decision history"), self._pool.connection() as conn:
            cur = await conn.execute(sql("decision_history"), params)
            rows = await cur.fetchall()
        items = [from_row(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit and items:
            next_cursor = encode_cursor(items[-1].created_at.isoformat(), items[-1].request_id)
        return Page(items=tuple(items), next_cursor=next_cursor)

    async def stats(self, since: datetime, until: datetime) -> DecisionStats:
        params = {"since": since, "until": until}
        async with translate_errors("compute decision stats"), self._pool.connection() as conn:
            cur = await conn.execute(sql("decision_stats"), params)
            rows = await cur.fetchall()
        by: dict[str, dict[str, int]] = {"decision": {}, "policy": {}, "rule": {}}
        latency: dict[str, float] = {}
        for kind, key, a, b, c in rows:
            if kind == "latency":
                latency = {"p50": float(a), "p95": float(b), "p99": float(c)}
            else:
                by[kind][key] = int(a)
        total = sum(by["decision"].values())
        return DecisionStats(
            total=total,
            by_decision=by["decision"],
            by_policy=by["policy"],
            by_rule=by["rule"],
            latency_ms=latency,
            since=since,
            until=until,
        )

    async def chain_size(self) -> int:
        async with translate_errors("count the decision log"), self._pool.connection() as conn:
            cur = await conn.execute(
                b"SELECT (SELECT count(*) FROM decision_log)"
                b" + (SELECT count(*) FROM decision_log_duplicates)"
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def chain_records(self, *, batch_size: int = 1000) -> AsyncIterator[DecisionRecord]:
        async with (
            translate_errors("read the decision chains"),
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(name="decision_chain") as cur,
        ):
            cur.itersize = batch_size
            await cur.execute(sql("decision_chain"))
            async for row in cur:
                yield from_row(row)

    # --- the writer ---------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._recover()
        except Exception:
            _log.exception("decision log: recovering the journal of a killed process failed")
        while True:
            if self._closing and not self._queue:
                break
            if len(self._queue) < self._batch and not (self._closing or self._flush_now):
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._interval)
            self._flush_now = False
            try:
                await self._step()
            except Exception:
                # The writer must outlive any surprise, or records would pile up unseen.
                _log.exception("decision log: writer step failed; retrying")
                self._mark_down(RuntimeError("writer step failed"))
            self._progress.set()

    async def _recover(self) -> None:
        """Queue, first, what a killed holder of this spool slot journaled and did not store.

        Its records already stored (or fsynced to the spool, which is replayed) are
        skipped by request id; the others are linked into this writer's chain as they
        leave the queue. With PostgreSQL away nothing can be skipped: the stored ones
        then come back as duplicates (kept in decision_log_duplicates, chain intact),
        and so do records the dead holder had fsynced to the spool just before it died.
        """
        journal = self._journal
        if journal is None or not journal.leftover:
            return
        records, torn = await asyncio.to_thread(Journal.read, journal.leftover)
        stored: set[str] = set()
        if records:
            try:
                stored = await self._stored_ids([r.request_id for r in records])
            except UNAVAILABLE as exc:
                _log.warning("decision log: cannot check the journal against the log (%s)", exc)
        fresh = [r for r in records if r.request_id not in stored]
        self._queue.extendleft(reversed([encode_line(r) for r in fresh]))
        self._recovered += len(fresh)
        journal.adopt_leftover()  # discarded with the first batch stored or spooled
        _log.info(
            "decision log: recovered %d records from the journal of a killed process"
            " (%d already stored, %d torn lines)",
            len(fresh),
            len(records) - len(fresh),
            torn,
        )
        if fresh:
            self._wakeup.set()

    async def _stored_ids(self, ids: list[str]) -> set[str]:
        conn = await self._connection()
        try:
            cur = await conn.execute(
                b"SELECT request_id FROM decision_log_ids WHERE request_id = ANY(%s)", (ids,)
            )
            rows = await cur.fetchall()
            await conn.commit()
        except UNAVAILABLE:
            await self._close_connection()
            raise
        return {r[0] for r in rows}

    async def _step(self) -> None:
        journal = self._journal
        if journal is not None:
            # Every record queued now is in a sealed segment; they go once stored or spooled.
            journal.seal()
        while self._queue:
            batch = await self._take(min(self._batch, len(self._queue)))
            try:
                await self._write(batch)
            except Exception:
                self._spool_batch(batch)
                raise
        self._spool.sync()
        if journal is not None:
            journal.discard_sealed()
        if self._spool.pending() and self._may_try():
            await self._replay()

    async def _pause(self) -> None:
        """Yield to the event loop if this turn of the writer used up its budget."""
        now = time.perf_counter()
        if now < self._turn_ends:
            return
        away = 0.0
        if self._turn_ends:
            await asyncio.sleep(0)
            away, now = time.perf_counter() - now, time.perf_counter()
        behind = len(self._queue) >= _BEHIND * self._batch
        budget = _BUDGET[behind]
        if behind:
            budget = min(max(budget, away), _MAX_TURN)
        self._turn_ends = now + budget

    async def _take(self, n: int) -> Batch:
        """The next `n` queued records, linked: by the helper, else here in slices (see `_pause`)."""
        popleft, chain, helper = self._queue.popleft, self.chain, self._helper
        lines = [popleft() for _ in range(n)]
        if helper is not None and n >= self._helper_min:
            linked = None
            self._linking = True
            try:
                linked = await helper.link(chain.writer, chain.seq, chain.head, lines)
            except asyncio.CancelledError:
                self._queue.extendleft(reversed(lines))  # not linked: back in order
                raise
            finally:
                self._linking = False
                if linked is not None:
                    batch, chain.seq, chain.head = linked
                self._spool_held()
            if linked is not None:
                return batch
        parts = []
        for start in range(0, n, _SLICE):
            await self._pause()
            parts.append(self._link_now(lines[start : start + _SLICE]))
        return join(parts)

    def _link_now(self, lines: list[bytes]) -> Batch:
        chain = self.chain
        batch, chain.seq, chain.head = link_lines(chain.writer, chain.seq, chain.head, lines)
        return batch

    def _spool_held(self) -> None:
        if self._held:
            held, self._held = self._held, []
            self._spool_batch(self._link_now(held), sync=False)

    def _may_try(self) -> bool:
        return not self._down or time.monotonic() >= self._next_probe

    async def _write(self, batch: Batch) -> None:
        if not self._may_try():
            self._spool_batch(batch)
            return
        rejected = self._rejected
        try:
            await self._insert_resilient(batch)
        except UNAVAILABLE as exc:
            self._mark_down(exc)
            self._spool_batch(batch)
            return
        self._mark_up()
        self._written += batch.count - (self._rejected - rejected)
        self._settle(batch.count)

    async def _replay(self) -> None:
        if not self._spool.prepare_replay():
            return
        # Decoding a spool of many records would hold the event loop: in a thread.
        batches = await asyncio.to_thread(self._replay_batches)
        try:
            for batch in batches:
                await self._insert_resilient(batch)
        except UNAVAILABLE as exc:
            self._mark_down(exc)  # the .replay file stays; it is replayed again later
            return
        self._mark_up()
        self._spool.end_replay()
        replayed = sum(b.count for b in batches)
        self._replayed += replayed
        _log.info("decision log: replayed %d spooled records", replayed)

    def _replay_batches(self) -> list[Batch]:
        records = self._spool.read_replay()
        return [batch_of(records[i : i + self._batch]) for i in range(0, len(records), self._batch)]

    async def _insert_resilient(self, batch: Batch) -> None:
        """Insert a batch; on a data error, row by row, rejecting the rows PostgreSQL refuses."""
        try:
            await self._insert(batch)
        except UNAVAILABLE:
            raise
        except Exception:
            records = records_of(batch)
            if len(records) == 1:
                self._rejected += 1
                self._spool.reject(records[0])
                _log.exception("decision log: record %r rejected", records[0].request_id)
                return
            for record in records:
                await self._insert_resilient(batch_of([record]))

    async def _connection(self) -> AsyncConnection[Any]:
        """The writer's own connection, made with the pool's settings.

        Not taken from the pool: after an outage a pool waits out its reconnect
        back-off, while the writer should resume as soon as the server answers
        (and it should not hold a connection the request path may need).
        """
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._conn = None
            conninfo, kwargs = await connect_args(self._pool)
            kwargs.setdefault("connect_timeout", max(2, round(self._timeout)))
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(conninfo, **kwargs), self._timeout
            )
            self._conn = conn
        return conn

    async def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._staging_on = None
        if conn is not None:
            with contextlib.suppress(*UNAVAILABLE):
                await conn.close()

    async def _insert(self, batch: Batch) -> None:
        conn = await self._connection()
        try:
            await self._insert_on(conn, batch)
        except UNAVAILABLE:
            await self._close_connection()
            raise

    async def _insert_on(self, conn: AsyncConnection[Any], batch: Batch) -> None:
        async with conn.transaction():
            await self._ensure_partitions(conn, batch.months)
            staged_now = conn is not self._staging_on
            if staged_now:
                # The temp table is the session's; created in this transaction, it goes
                # if the transaction fails (the mark is set only once it committed).
                self._staging_on = None
                await conn.execute(sql("decision_staging"))
            data = memoryview(copy_lines(batch.lines))
            async with conn.cursor() as cur, cur.copy(COPY) as copy:
                for start in range(0, len(data), _COPY_CHUNK):
                    await self._pause()
                    await copy.write(data[start : start + _COPY_CHUNK])
            await conn.execute(sql("decision_insert"))
        if staged_now:
            self._staging_on = conn

    async def _ensure_partitions(self, conn: AsyncConnection[Any], months: list[datetime]) -> None:
        """Make the partitions of these times (one per month of a batch) not made yet."""
        missing = [at for at in months if month_of(at) not in self._months]
        if missing:
            await conn.execute(
                b"SELECT decision_log_ensure_partition(m) FROM unnest(%s::timestamptz[]) AS m",
                (missing,),
            )
            self._months.update(month_of(at) for at in missing)

    def _spool_batch(self, batch: Batch, *, sync: bool = True) -> None:
        try:
            self._spool.write_lines(batch.lines, batch.oldest, sync=sync)
        except OSError:
            self._dropped += batch.count
            _log.exception("decision log: spool unwritable, %d records dropped", batch.count)
        else:
            self._spooled += batch.count
        self._settle(batch.count)

    def _settle(self, n: int) -> None:
        self._settled += n
        self._progress.set()

    def _mark_down(self, exc: BaseException) -> None:
        if not self._down:
            self._outages += 1
            _log.warning("decision log: PostgreSQL unavailable (%s); spooling", exc)
        self._down = True
        self._next_probe = time.monotonic() + self._retry

    def _mark_up(self) -> None:
        if self._down:
            _log.info("decision log: PostgreSQL is back")
        self._down = False
