"""Linking the decision log's queued lines into its hash chain, and a helper process that does it.

Linking a record (decode its queued line, fill in the digest, hash the
canonical encoding, encode the linked record) costs 15-30 µs; at 5,000
decisions/s that was about a third of the server worker's Python time, on the
event loop the requests share (docs/benchmarks.md, "Single-node tail").
`link_lines` is a pure function of (writer, seq, head, lines). The decision
log hands large batches to a `LinkHelper`, a child process running it, and
takes the chain's new (seq, head) from the answer; small batches, and every
batch while the helper is starting, gone or late, are linked inline by the
same function, so the chain is the same either way
(packages/adapters-postgres/tests/test_pg_decision_log_helper.py pins them together).

The helper speaks on its stdin and stdout: frames of a 4-byte big-endian length
and a msgpack document. It first sends an empty reply (ready), answers each
request in order, and exits at the end of its stdin (its parent closed it, or
died).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from policy_core.ports import DecisionRecord
from policy_core.services import ChainWriter

from policy_postgres.spool import decode_line, encode_line

__all__ = [
    "Batch",
    "LinkHelper",
    "batch_of",
    "join",
    "link_lines",
    "month_of",
    "records_of",
    "serve",
]

_log = logging.getLogger(__name__)


def month_of(at: datetime) -> tuple[int, int]:
    """(year, month) of the UTC time, as decision_log's partitions are cut."""
    utc = at.astimezone(UTC)
    return utc.year, utc.month


class Batch(msgspec.Struct, frozen=True, array_like=True):
    """Records on their way to PostgreSQL or the spool, as spool lines.

    `lines`: one `encode_line` per record, in order; `months`: the `created_at`
    of one record of each UTC month in the batch (the partitions it needs);
    `oldest`: the earliest `created_at`.
    """

    lines: bytes
    count: int
    months: list[datetime]
    oldest: datetime | None


def batch_of(records: Sequence[DecisionRecord]) -> Batch:
    """The batch of records already linked (or never to be: a replay of the spool)."""
    months: dict[tuple[int, int], datetime] = {}
    oldest: datetime | None = None
    for record in records:
        at = record.created_at
        months.setdefault(month_of(at), at)
        if oldest is None or at < oldest:
            oldest = at
    lines = b"".join([encode_line(record) for record in records])
    return Batch(lines, len(records), list(months.values()), oldest)


def join(batches: Sequence[Batch]) -> Batch:
    """One batch of several, in order."""
    if len(batches) == 1:
        return batches[0]
    months: dict[tuple[int, int], datetime] = {}
    for batch in batches:
        for at in batch.months:
            months.setdefault(month_of(at), at)
    stamps = [b.oldest for b in batches if b.oldest is not None]
    return Batch(
        b"".join([b.lines for b in batches]),
        sum(b.count for b in batches),
        list(months.values()),
        min(stamps) if stamps else None,
    )


def records_of(batch: Batch) -> list[DecisionRecord]:
    """The records of a batch (msgspec escapes every control character: a line has no raw newline)."""
    return [decode_line(line) for line in batch.lines.split(b"\n")[:-1]]


def link_lines(writer: str, seq: int, head: str, lines: Sequence[bytes]) -> tuple[Batch, int, str]:
    """Queued lines linked into the chain `writer` whose last link is (seq, head).

    Returns the batch and the chain's new (seq, head). Pure: the same arguments
    give the same answer, in this process or the helper.
    """
    chain = ChainWriter(writer)
    chain.seq, chain.head = seq, head
    batch = batch_of([chain.link(decode_line(line)) for line in lines])
    return batch, chain.seq, chain.head


class _Request(msgspec.Struct, frozen=True, array_like=True):
    writer: str
    seq: int
    head: str
    lines: list[bytes]


class _Reply(msgspec.Struct, frozen=True, array_like=True):
    batch: Batch | None = None
    seq: int = 0
    head: str = ""
    error: str | None = None


_encoder = msgspec.msgpack.Encoder()
_request = msgspec.msgpack.Decoder(_Request)
_reply = msgspec.msgpack.Decoder(_Reply)


def _frame(doc: msgspec.Struct) -> bytes:
    body = _encoder.encode(doc)
    return len(body).to_bytes(4, "big") + body


class LinkHelper:
    """A child process running `link_lines`, started on first use.

    `link` answers None whenever the caller should link inline instead: the
    helper is starting (the first batches are linked inline while it imports),
    it failed (it is killed and started again `retry` seconds later), or it did
    not answer within `timeout` seconds. Nothing is lost that way: the caller
    still holds the lines. Call `close` at the end.
    """

    def __init__(self, *, timeout: float = 10.0, retry: float = 30.0) -> None:
        self._timeout, self._retry = timeout, retry
        self._proc: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[asyncio.subprocess.Process] | None = None
        self._retry_at = 0.0
        self.linked = 0  # records the helper linked
        self.failures = 0

    @property
    def pid(self) -> int | None:
        """The helper's process id while it runs."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start the helper now (else on the first `link`); it is ready a moment later."""
        if self._proc is None:
            self._check_start()

    async def ready(self) -> bool:
        """Wait until a started helper is ready (or failed to start); True: it runs."""
        starting = self._starting
        if starting is not None:
            await asyncio.wait([starting])
            self._check_start()
        return self._proc is not None

    async def link(
        self, writer: str, seq: int, head: str, lines: list[bytes]
    ) -> tuple[Batch, int, str] | None:
        proc = self._proc or self._check_start()
        if proc is None:
            return None
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(_frame(_Request(writer, seq, head, lines)))
            reply = await asyncio.wait_for(self._read(proc.stdout), self._timeout)
        except asyncio.CancelledError:
            await self._fail("cancelled mid-request")  # its next answer would be this one's
            raise
        except Exception as exc:  # gone (EOF, broken pipe), or late
            await self._fail(f"{type(exc).__name__} {exc}".strip())
            return None
        if reply.batch is None:
            # It could not link these lines (a bug, not an outage): inline says why.
            _log.warning("decision log: the link helper failed on a batch: %s", reply.error)
            return None
        self.linked += reply.batch.count
        return reply.batch, reply.seq, reply.head

    async def close(self) -> None:
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.cancel()  # a start cancelled midway stops its process itself
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await _stop(await starting)
        proc, self._proc = self._proc, None
        if proc is not None:
            await _stop(proc)

    def _check_start(self) -> asyncio.subprocess.Process | None:
        starting = self._starting
        if starting is None:
            if time.monotonic() >= self._retry_at:
                self._starting = asyncio.get_running_loop().create_task(
                    self._start(), name="decision-log-link-helper"
                )
            return None
        if not starting.done():
            return None
        self._starting = None
        exc = starting.exception() if not starting.cancelled() else None
        if starting.cancelled() or exc is not None:
            self.failures += 1
            self._retry_at = time.monotonic() + self._retry
            _log.warning("decision log: the link helper did not start (%s); linking inline", exc)
            return None
        self._proc = starting.result()
        return self._proc

    async def _start(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "policy_postgres._link_helper",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            ready = await asyncio.wait_for(self._read(proc.stdout), 60.0)
            if ready.error is not None:
                raise RuntimeError(ready.error)
        except BaseException:
            await _stop(proc)
            raise
        return proc

    @staticmethod
    async def _read(stdout: asyncio.StreamReader) -> _Reply:
        size = int.from_bytes(await stdout.readexactly(4), "big")
        return _reply.decode(await stdout.readexactly(size))

    async def _fail(self, why: str) -> None:
        self.failures += 1
        self._retry_at = time.monotonic() + self._retry
        _log.warning("decision log: the link helper failed (%s); linking inline", why)
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await _stop(proc)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """End the helper: close its stdin (it exits), kill it if it does not within a second."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 1.0)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


def serve() -> None:
    """The helper's loop (`python -m policy_postgres._link_helper`)."""
    # A Ctrl-C in a terminal reaches the whole process group: the parent decides when
    # this ends (by closing stdin, or by dying).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    inp = sys.stdin.buffer
    out.write(_frame(_Reply()))
    out.flush()
    while len(size := inp.read(4)) == 4:
        body = inp.read(int.from_bytes(size, "big"))
        try:
            req = _request.decode(body)
            batch, seq, head = link_lines(req.writer, req.seq, req.head, req.lines)
            reply = _Reply(batch, seq, head)
        except Exception as exc:
            reply = _Reply(error=f"{type(exc).__name__}: {exc}")
        out.write(_frame(reply))
        out.flush()
