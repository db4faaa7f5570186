"""A durable outbox: each event written to disk before `submit` returns, delivered at least once.

`submit(item)` is the whole cost on the caller's path: it encodes the event
(`encode` gives the idempotency key and the JSON body) and appends it with
one `os.write` to the open segment file in `directory` (JSON lines, like the
decision log's spool). No fsync, no network, no await: once `submit` has
returned, the event is in the kernel's page cache, which a killed process
(SIGKILL, an OOM kill) does not lose; only a power loss or a kernel crash
can. A segment is closed (renamed `*.seg`, then fsynced in a worker thread
by a background task) when it holds `segment_events` events, has been open
for `segment_seconds`, or the deliverer is idle (every `flush_interval`).
So a power loss can lose the events of the open segment and of the segments
closed in the last `flush_interval` (tens of milliseconds); a killed process
loses none.

A second task delivers closed segments oldest first, `concurrency` events at
a time, each with `deliver(key, body)`; an event that fails is retried
(exponential backoff up to `retry_max` seconds) until it is acknowledged; a
segment is deleted only once every event in it is. An event the receiver
refuses for good (a 4xx other than 408/429: `Rejected`) is appended to
`rejected.jsonl` for a human, never dropped.

When the disk refuses a write (full, read-only, I/O error) the event waits in
memory instead and the background task writes it once the disk takes writes
again (an error is logged, and again each time another `memory_limit` events
wait); such events are not durable until then. A segment holds at most
`segment_events` events in memory while it is delivered.

At least once, across restarts and crashes: a new Outbox over the same
directory delivers every segment left, also the open one of a killed
process (a line torn by a crash mid-write is kept aside). An interrupted
segment is delivered again from its start: the receiver sees the same
`Idempotency-Key` twice and keeps one. `claim_slot` gives each process its
own directory and hands a dead process's slot to the next claimant.

One event loop owns an Outbox: `submit` is called from its thread (the
services do), as the background tasks run there and rotate the segments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Generic, TypeVar

import msgspec
from policy_core.ports import OutboxStatus

__all__ = ["Outbox", "Rejected", "Slot", "claim_slot"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

_line = msgspec.json.Decoder(tuple[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


def _fsync_files(paths: list[Path]) -> None:
    """fsync each file (one already delivered and deleted is simply skipped)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _segment_files(directory: Path) -> list[tuple[int, Path]]:
    """(sequence number, path) of the segments in `directory`, closed (`.seg`) and open."""
    return sorted(
        (int(path.stem), path)
        for path in directory.iterdir()
        if path.suffix in (".seg", ".open") and path.stem.isdigit() and path.is_file()
    )


class Slot:
    """A directory this process owns exclusively while it holds the lock (see `claim_slot`)."""

    def __init__(self, path: Path, fd: int, adopted: int = 0) -> None:
        self.path, self._fd = path, fd
        #: segments moved here from slots no live process held (see `claim_slot`)
        self.adopted = adopted

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = -1


def _try_lock(path: Path) -> int | None:
    import fcntl

    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _adopt(into: Path, orphan: Path) -> int:
    """Move the segments of `orphan` (a slot we hold locked) into `into`, numbered after its own."""
    mine = _segment_files(into)
    seq = mine[-1][0] if mine else 0
    moved = 0
    for _, path in _segment_files(orphan):
        seq += 1
        os.rename(path, into / f"{seq:012d}.seg")
        moved += 1
    return moved


def claim_slot(base: Path, *, adopt: bool = False) -> Slot:
    """The first `base/slot-N` no other live process holds (flock), locked for this one.

    Several workers on one data directory each get their own outbox. A
    process's lock goes with it however it ends (SIGKILL too), so its slot is
    free again at once: a respawned worker or the next start claims it and
    delivers what it left. With `adopt` (outbox segments only), the segments
    of every other slot no live process holds are moved into the claimed one
    as well, so nothing waits in a slot no one claims (fewer workers than
    before). Claims on one `base` are serialized (a lock on `base/.claim`),
    so a slot being emptied is never skipped by a worker starting alongside.
    """
    import fcntl

    base.mkdir(parents=True, exist_ok=True)
    gate = os.open(base / ".claim", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)  # held for a few file operations by any claimant
        n = 0
        while True:
            path = base / f"slot-{n}"
            path.mkdir(exist_ok=True)
            fd = _try_lock(path)
            if fd is not None:
                break
            n += 1
        adopted = 0
        if adopt:
            for other in sorted(base.glob("slot-*")):
                if other == path or not other.is_dir():
                    continue
                other_fd = _try_lock(other)
                if other_fd is None:
                    continue  # a live process holds it
                try:
                    adopted += _adopt(path, other)
                finally:
                    os.close(other_fd)
            if adopted:
                _log.info("outbox slot %s: took over %d segments of free slots", path, adopted)
        return Slot(path, fd, adopted)
    finally:
        os.close(gate)


class Rejected(Exception):
    """The receiver refused an event for good (retrying cannot help): it is kept aside."""


class _Segment:
    __slots__ = ("count", "path", "started")

    def __init__(self, path: Path, count: int, started: float) -> None:
        self.path, self.count, self.started = path, count, started


class Outbox(Generic[T]):
    """At-least-once delivery of `T` events through `deliver`, durable in `directory`."""

    def __init__(
        self,
        sink: str,
        directory: Path,
        *,
        encode: Callable[[T], tuple[str, bytes]],
        deliver: Callable[[str, bytes], Awaitable[None]],
        memory_limit: int = 10_000,
        segment_events: int = 1_000,
        segment_seconds: float = 0.2,
        flush_interval: float = 0.02,
        concurrency: int = 16,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
        fsync: bool = True,
    ) -> None:
        self.sink = sink
        self.directory = Path(directory)
        self._encode, self._deliver = encode, deliver
        self._limit = max(1, memory_limit)
        self._segment_events = max(1, segment_events)
        self._segment_seconds = segment_seconds
        self._flush_interval = flush_interval
        self._concurrency = max(1, concurrency)
        self._retry_initial, self._retry_max = retry_initial, retry_max
        self._fsync = fsync
        # Events the disk refused, waiting for the writer task (empty while the disk works).
        self._queue: deque[T] = deque()
        self._warned_at = 0
        self._ready: deque[_Segment] = deque()
        self._open: _Segment | None = None
        self._fd = -1  # the open segment's descriptor (O_APPEND)
        self._seq = 0
        self._on_disk = 0  # events in segments (open or closed), not yet delivered
        self._tasks: list[asyncio.Task[None]] = []
        self._segment_ready = asyncio.Event()
        self._unsynced: list[Path] = []  # closed segments the writer task still fsyncs
        self.delivered: dict[str, int] = {}
        self._recover()

    # --- the caller's side ------------------------------------------------

    def submit(self, item: T) -> None:
        """Write one event to the open segment (one `os.write`, no fsync); never raises or drops.

        When this returns the event survives the process being killed. If the
        disk refuses the write, the event waits in memory for the writer task.
        """
        if self._queue:  # the disk refused earlier writes: keep their order, do not insist
            self._hold(item)
            return
        try:
            key, body = self._encode(item)
        except Exception:
            _log.exception("outbox %s: an event could not be encoded; it is kept aside", self.sink)
            self._keep_aside(repr(item).encode())
            return
        line = _encoder.encode((key, msgspec.Raw(body))) + b"\n"
        try:
            self._write(line, 1)
        except OSError:
            _log.exception(
                "outbox %s: cannot write to %s; the event waits in memory",
                self.sink,
                self.directory,
            )
            self._hold(item)

    def status(self) -> OutboxStatus:
        """Events waiting (memory and disk), age of the oldest, deliveries by outcome."""
        oldest = self._ready[0].started if self._ready else None
        if oldest is None and self._open is not None and self._open.count:
            oldest = self._open.started
        if oldest is None and self._queue:
            oldest = time.time()
        age = 0.0 if oldest is None else max(0.0, time.time() - oldest)
        return OutboxStatus(
            sink=self.sink,
            depth=len(self._queue) + self._on_disk,
            oldest_age_seconds=age,
            delivered=dict(self.delivered),
        )

    # --- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        if not self._tasks:
            self._segment_ready = asyncio.Event()
            if self._ready:
                self._segment_ready.set()
            self._tasks = [
                asyncio.create_task(self._write_loop(), name=f"outbox-{self.sink}-write"),
                asyncio.create_task(self._deliver_loop(), name=f"outbox-{self.sink}-deliver"),
            ]

    async def close(self) -> None:
        """Stop delivering and make everything durable (delivered after a restart)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            self._spill()
        except OSError:
            _log.exception(
                "outbox %s: %d events could not be written to %s and are lost",
                self.sink,
                len(self._queue),
                self.directory,
            )
        self._close_segment(sync=True)
        if self._unsynced:
            _fsync_files(self._unsynced)
            self._unsynced = []

    async def drain(self, within: float) -> bool:
        """Wait until every queued event was delivered (True) or `within` seconds passed (False)."""
        deadline = time.monotonic() + within
        while self._queue or self._on_disk:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self._flush_interval)
        return True

    # --- disk -------------------------------------------------------------

    def _recover(self) -> None:
        """Segments an earlier run left: closed ones, and an open one cut short by a crash."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for seq, found in _segment_files(self.directory):
            path = found
            if path.suffix == ".open":
                closed = path.with_suffix(".seg")
                os.replace(path, closed)
                path = closed
            with open(path, "rb") as fh:
                count = sum(1 for line in fh if line.strip())
            self._seq = max(self._seq, seq)
            if count == 0:
                path.unlink(missing_ok=True)
                continue
            self._ready.append(_Segment(path, count, path.stat().st_mtime))
            self._on_disk += count

    def _write(self, data: bytes, count: int) -> None:
        """Append `count` encoded events to the open segment (opened if need be), then count them.

        Raises OSError when the disk refuses; what a short write left is then
        a torn line, which delivery keeps aside.
        """
        if self._fd < 0:
            self._open_segment()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        segment = self._open
        assert segment is not None
        if not segment.count:
            segment.started = time.time()  # opened ahead by the writer task, maybe long ago
        segment.count += count
        self._on_disk += count
        if segment.count >= self._segment_events:
            self._close_segment()

    def _open_segment(self) -> None:
        """A new empty open segment (the writer task opens one ahead: a file creation costs
        tens of µs, which `submit` then does not pay)."""
        self._seq += 1
        path = self.directory / f"{self._seq:012d}.open"
        self._fd = os.open(path, _OPEN_FLAGS, 0o600)
        self._open = _Segment(path, 0, time.time())

    def _hold(self, item: T) -> None:
        queue = self._queue
        queue.append(item)
        if len(queue) >= self._warned_at + self._limit:
            self._warned_at = len(queue)
            _log.error(
                "outbox %s: %d events wait in memory, the disk at %s refuses writes",
                self.sink,
                len(queue),
                self.directory,
            )

    def _spill(self) -> None:
        """Write what waits in memory (the disk refused it earlier) to the open segment."""
        queue = self._queue
        while queue:
            batch = bytearray()
            count = 0
            taken: list[T] = []
            while queue and count < self._segment_events:
                item = queue.popleft()
                try:
                    key, body = self._encode(item)
                except Exception:
                    _log.exception(
                        "outbox %s: an event could not be encoded; it is kept aside", self.sink
                    )
                    self._keep_aside(repr(item).encode())
                    continue
                taken.append(item)
                _encoder.encode_into((key, msgspec.Raw(body)), batch, len(batch))
                batch += b"\n"
                count += 1
            if not count:
                continue
            try:
                self._write(bytes(batch), count)
            except OSError:
                queue.extendleft(reversed(taken))  # retried later, in their order
                raise
        self._warned_at = 0

    def _close_segment(self, *, sync: bool = False) -> None:
        """Close the open segment for delivery; fsynced here with `sync`, else by the writer task.

        Only shutdown syncs here: on the event loop an fsync could stall
        evaluations for milliseconds, so the writer task does it in a thread.
        """
        segment, self._open = self._open, None
        if segment is None:
            return
        fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                if sync and self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        if segment.count == 0:
            segment.path.unlink(missing_ok=True)
            return
        closed = segment.path.with_suffix(".seg")
        os.replace(segment.path, closed)
        segment.path = closed
        if not sync and self._fsync:
            self._unsynced.append(closed)
        self._ready.append(segment)
        self._segment_ready.set()

    def _keep_aside(self, line: bytes) -> None:
        try:
            with open(self.directory / "rejected.jsonl", "ab") as fh:
                fh.write(line.rstrip(b"\n") + b"\n")
        except OSError:
            _log.exception("outbox %s: cannot keep an event aside: %r", self.sink, line[:200])

    def _count(self, outcome: str, n: int = 1) -> None:
        self.delivered[outcome] = self.delivered.get(outcome, 0) + n

    # --- background tasks -------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                self._spill()
                segment = self._open
                if (
                    segment is not None
                    and segment.count
                    and (time.time() - segment.started >= self._segment_seconds or not self._ready)
                ):
                    self._close_segment()
                if self._fd < 0:
                    self._open_segment()  # ahead of the next submit
                if self._unsynced:
                    paths, self._unsynced = self._unsynced, []
                    await asyncio.to_thread(_fsync_files, paths)
            except OSError:
                _log.exception("outbox %s: cannot write to %s; retrying", self.sink, self.directory)
                await asyncio.sleep(1.0)

    async def _deliver_loop(self) -> None:
        while True:
            if not self._ready:
                self._segment_ready.clear()
                await self._segment_ready.wait()
                continue
            segment = self._ready[0]
            await self._deliver_segment(segment)
            self._ready.popleft()
            segment.path.unlink(missing_ok=True)

    def _read_segment(self, path: Path) -> list[tuple[str, bytes, bytes]]:
        """(key, body, line) of each event in a segment (a few hundred kB at most)."""
        entries: list[tuple[str, bytes, bytes]] = []
        with open(path, "rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                try:
                    key, body = _line.decode(raw)
                except msgspec.DecodeError:
                    # A line torn by a crash mid-write: keep it for a human.
                    self._keep_aside(raw)
                    continue
                entries.append((key, bytes(body), raw))
        return entries

    async def _deliver_segment(self, segment: _Segment) -> None:
        entries = self._read_segment(segment.path)
        # Counted in _on_disk when written; the torn ones are gone from the count now.
        self._on_disk -= segment.count - len(entries)
        segment.count = len(entries)
        pending = list(range(len(entries)))
        delay = self._retry_initial
        gate = asyncio.Semaphore(self._concurrency)

        async def one(index: int) -> bool:
            key, body, raw = entries[index]
            async with gate:
                try:
                    await self._deliver(key, body)
                except Rejected:
                    self._keep_aside(raw)
                    self._count("rejected")
                    return True
                except TimeoutError:
                    self._count("timeout")
                    return False
                except Exception as exc:  # IntegrationError says why: error, timeout, breaker_open
                    self._count(str(getattr(exc, "outcome", "error")))
                    return False
            self._count("ok")
            return True

        probing = False
        while pending:
            # After a round with no acknowledgement, one event probes before the rest follow.
            batch = pending[:1] if probing else pending
            done = await asyncio.gather(*(one(i) for i in batch))
            left = [i for i, ok in zip(batch, done, strict=True) if not ok]
            acknowledged = len(batch) - len(left)
            self._on_disk -= acknowledged
            segment.count -= acknowledged
            pending = left + pending[len(batch) :]
            probing = acknowledged == 0
            if probing:
                await asyncio.sleep(delay)
                delay = min(self._retry_max, delay * 2)
            else:
                delay = self._retry_initial
