"""The decision log's journal: every appended record, on local disk before its decision is answered.

`PostgresDecisionLog.append` runs on the request path and only queues a record
in memory for the background writer; a process killed with SIGKILL (the OOM
killer, a supervisor, an operator) would lose whatever the writer had not yet
stored. So `append` first writes the record, encoded, to this journal with one
plain `os.write` on an O_APPEND descriptor: the bytes are in the kernel's page
cache when `append` returns, and a killed process does not take the page cache
with it (a crash of the machine itself does; no fsync on the request path).

The journal is a series of segment files `<spool>.journal.<k>`. The writer
*seals* the current segment when it takes the queue (the records queued at that
moment are exactly those of the sealed segments) and deletes sealed segments
once their records are stored in PostgreSQL or fsynced to the spool. Segments
found when a log opens belong to a holder of the same spool slot that died
(see `policy_cli.wiring`): the log ships them first, skipping the request ids
already stored, and links them into its own hash chain.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from policy_core.ports import DecisionRecord

from policy_postgres.spool import read_records

__all__ = ["Journal", "segments"]


_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


def _number(path: Path) -> int:
    try:
        return int(path.name.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return -1


def segments(spool: Path) -> list[Path]:
    """The journal segments of the spool slot `spool`, oldest first."""
    found = [p for p in spool.parent.glob(spool.name + ".journal.*") if _number(p) >= 0]
    return sorted(found, key=_number)


class Journal:
    """Appends records to the current segment; seals and discards segments for the writer.

    Single-writer and not thread-safe: the log calls it from its event loop thread.
    """

    def __init__(self, spool: Path) -> None:
        self._spool = spool
        found = segments(spool)
        #: Segments an earlier holder of the slot left: to be shipped, then discarded.
        self.leftover: list[Path] = found
        self._next = (_number(found[-1]) + 1) if found else 0
        self._fd = -1
        self._current: Path | None = None
        self._dirty = False  # the current segment holds a record
        self._sealed: list[Path] = []
        self.errors = 0

    def write(self, line: bytes) -> None:
        """Append one encoded record (`spool.encode_line`, one `os.write`, no fsync).

        Raises OSError if the disk refuses."""
        if self._fd < 0:
            self._open()
        os.write(self._fd, line)
        self._dirty = True

    def _open(self) -> None:
        path = self._spool.with_name(f"{self._spool.name}.journal.{self._next}")
        self._next += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, _FLAGS, 0o600)
        self._current = path

    def seal(self, *, reopen: bool = True) -> None:
        """End the current segment if it holds a record: later writes go to a new one,
        opened here (by the writer) so that no request pays for creating a file."""
        if self._fd < 0 or not self._dirty:
            return
        os.close(self._fd)
        self._fd = -1
        assert self._current is not None
        self._sealed.append(self._current)
        self._current = None
        self._dirty = False
        if reopen:
            with contextlib.suppress(OSError):  # else the next write tries, and says so
                self._open()

    def discard_sealed(self) -> None:
        """Delete the sealed segments (their records are stored or fsynced to the spool)."""
        sealed, self._sealed = self._sealed, []
        for path in sealed:
            path.unlink(missing_ok=True)

    def adopt_leftover(self) -> None:
        """Treat the leftover segments as sealed: discarded with the next sealed ones."""
        self._sealed[:0] = self.leftover
        self.leftover = []

    def close(self, *, discard: bool) -> None:
        """Seal; with `discard`, delete every segment (all records are safe elsewhere)."""
        self.seal(reopen=False)
        if self._fd >= 0:  # opened, never written
            os.close(self._fd)
            self._fd = -1
            if self._current is not None:
                self._current.unlink(missing_ok=True)
                self._current = None
        if discard:
            self.discard_sealed()

    @staticmethod
    def read(paths: list[Path]) -> tuple[list[DecisionRecord], int]:
        """The records of `paths`, in order, and the number of unreadable (torn) lines."""
        records: list[DecisionRecord] = []
        torn = 0
        for path in paths:
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as fh:
                more, cut = read_records(fh)
                records += more
                torn += cut
        return records, torn
