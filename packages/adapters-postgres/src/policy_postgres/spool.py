"""The decision log's local spool: an append-only file of JSON lines.

Records go here when PostgreSQL cannot take them (outage, or a full queue)
and are replayed from here on recovery. Replay first renames the file to
`<name>.replay`, so records spooled during a replay go to a fresh file; a
replay interrupted by a crash or an outage is simply repeated (inserts are
idempotent on request_id).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
from policy_core.ports import DecisionRecord
from policy_core.services import with_digest

__all__ = ["Spool", "decode_line", "encode_line", "read_records"]

_encoder = msgspec.json.Encoder(enc_hook=str)  # never fail on an odd value
_decoder = msgspec.json.Decoder(DecisionRecord)


def encode_line(record: DecisionRecord) -> bytes:
    """A record as one line of this format (JSON and a newline), as the journal writes it."""
    return _encoder.encode(record) + b"\n"


_RECORD_FIELDS = msgspec.structs.fields(DecisionRecord)


def decode_line(line: bytes) -> DecisionRecord:
    """The record of a line `encode_line` wrote (the decision log's queue holds such lines).

    A record JSON cannot carry exactly (a NaN latency is written as null) comes
    back field by field, the odd field as JSON gave it (a NaN number again): it is
    then stored or, when PostgreSQL refuses it, rejected as it was before records
    were queued as lines, and never lost on the way.
    """
    try:
        return _decoder.decode(line)
    except msgspec.ValidationError:
        pass
    raw = msgspec.json.decode(line)
    fields: dict[str, Any] = {}
    for field in _RECORD_FIELDS:
        if field.name not in raw:
            continue
        value = raw[field.name]
        try:
            fields[field.name] = msgspec.convert(value, field.type, strict=False)
        except msgspec.ValidationError:
            fields[field.name] = math.nan if field.name == "latency_ms" else value
    return DecisionRecord(**fields)


def read_records(lines: Iterable[bytes]) -> tuple[list[DecisionRecord], int]:
    """The records of JSON lines (the spool's and the journal's format), in order, and how
    many lines were torn (cut short by a crash mid-write: nothing left to recover)."""
    records: list[DecisionRecord] = []
    torn = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            records.append(_decoder.decode(line))
        except msgspec.DecodeError:
            torn += 1
    return records, torn


class _Stamp(msgspec.Struct):
    """Only the time of a spooled record (reading a line's stamp skips the rest)."""

    created_at: datetime


_stamp = msgspec.json.Decoder(_Stamp)


def _first_stamp(path: Path) -> datetime | None:
    """`created_at` of the first readable record in `path` (None: no file, or none readable)."""
    try:
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    return _stamp.decode(line).created_at
                except msgspec.DecodeError:
                    continue
    except FileNotFoundError:
        return None
    return None


def _earliest(*stamps: datetime | None) -> datetime | None:
    known = [s for s in stamps if s is not None]
    return min(known) if known else None


class Spool:
    """Appends records to `path`; hands them back for replay."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.replay_path = path.with_name(path.name + ".replay")
        self.rejected_path = path.with_name(path.name + ".rejected")
        self._fh: BinaryIO | None = None
        self.corrupt_lines = 0
        # The oldest record of each file, for `oldest()`: a file left by an earlier
        # run is read once here (its first line), later ones tracked as they are written.
        self._oldest = _first_stamp(path)
        self._oldest_replay = _first_stamp(self.replay_path)

    def write(self, records: list[DecisionRecord], *, sync: bool = False) -> None:
        """Append records (buffered; `sync` flushes and fsyncs)."""
        lines = b"".join([encode_line(with_digest(r)) for r in records])
        self.write_lines(lines, _earliest(*(r.created_at for r in records)), sync=sync)

    def write_lines(self, lines: bytes, oldest: datetime | None, *, sync: bool = False) -> None:
        """Append lines of this format (`encode_line`), `oldest` their earliest `created_at`."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open across calls
        self._oldest = _earliest(self._oldest, oldest)
        self._fh.write(lines)
        if sync:
            self.sync()

    def sync(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None

    def pending(self) -> bool:
        """True when records wait for replay."""
        return self.replay_path.exists() or (self.path.exists() and self.path.stat().st_size > 0)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, self.replay_path) if p.exists())

    def oldest(self) -> datetime | None:
        """`created_at` of the oldest record waiting in the spool (None: it is empty)."""
        return _earliest(self._oldest, self._oldest_replay)

    def begin_replay(self) -> list[DecisionRecord]:
        """The records to replay (an interrupted replay first, else the current spool)."""
        return self.read_replay() if self.prepare_replay() else []

    def prepare_replay(self) -> bool:
        """Move the spool aside for replay (unless an interrupted replay waits); False: nothing to replay.

        Call it from the thread that writes the spool; `read_replay` may then run in
        another (nothing writes the replay file).
        """
        if not self.replay_path.exists():
            if not self.pending():
                return False
            self.close()
            os.replace(self.path, self.replay_path)
            self._oldest_replay, self._oldest = self._oldest, None
        return True

    def read_replay(self) -> list[DecisionRecord]:
        """The records of the replay file, torn lines counted in `corrupt_lines`."""
        with open(self.replay_path, "rb") as fh:
            records, torn = read_records(fh)
        self.corrupt_lines += torn
        return records

    def end_replay(self) -> None:
        self.replay_path.unlink(missing_ok=True)
        self._oldest_replay = None

    def reject(self, record: DecisionRecord) -> None:
        """Keep a record PostgreSQL refused (bad data) for a human to look at."""
        self.rejected_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.rejected_path, "ab") as fh:
            fh.write(_encoder.encode(with_digest(record)) + b"\n")
