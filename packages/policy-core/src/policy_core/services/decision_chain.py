"""The tamper-evident decision log: hash chains per writer, and their verification.

A *writer* is one decision log instance (one per process or worker). It links
each record it stores to the one before: `ChainLink(writer, seq, prev, hash)`,
where `hash` is SHA-256 of the record's canonical encoding (below) with the
writer, the seq and the previous hash. Editing a stored record changes its
hash; deleting one leaves a gap in the seqs; moving one changes its seq or
breaks the next record's `prev`. `ChainVerifier` reads records in chain order
and names the first broken or missing link of each writer.

The canonical encoding is taken of the record *as a store gives it back*, so
that a record read from PostgreSQL hashes as it did when it was written: JSON
with sorted keys and no spaces, times in UTC, and numbers as jsonb keeps them
(integral floats from 1e16 up become integers, -0.0 becomes 0.0, NaN and the
infinities null, NUL characters U+FFFD).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import socket
from collections.abc import Iterable
from datetime import UTC
from decimal import Decimal
from typing import Any, Literal

import msgspec

from policy_core.ports import ChainLink, DecisionRecord
from policy_core.services.evaluation_service import with_digest

__all__ = [
    "GENESIS",
    "ChainProblem",
    "ChainReport",
    "ChainVerifier",
    "ChainWriter",
    "canonical_record",
    "new_writer_id",
    "record_hash",
    "verify_records",
]

GENESIS = "sha256:" + "0" * 64  # the `prev` of a writer's first record
_MAX_PROBLEMS = 100  # problems kept in a report (all are counted)
_encoder = msgspec.json.Encoder(order="sorted", enc_hook=str)
_decoder = msgspec.json.Decoder()
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def new_writer_id() -> str:
    """`<host>:<pid>:<random>`: unique per log instance, so a restart starts a new chain."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _normal(value: Any) -> Any:
    """A JSON value as jsonb would hand it back (see the module docstring).

    Takes the output of `msgspec.to_builtins` (exact dict, list, str, int, float,
    bool and None), so exact type checks suffice; strings, ints, bools and None
    are returned without a call (most of a context: this is a third of linking).
    """
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            return None
        if value == 0.0:
            return 0.0
        if abs(value) >= 1e16:
            return int(Decimal(repr(value)))
        return value
    if kind is dict:
        return {k: v if type(v) in _AS_IS else _normal(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _AS_IS else _normal(v) for v in value]
    return value


_AS_IS = frozenset({str, int, bool, type(None)})


def canonical_record(record: DecisionRecord, writer: str, seq: int, prev: str) -> bytes:
    """The bytes a record's chain hash is taken of (every field but the hash itself)."""
    doc = {
        "request_id": record.request_id,
        "policy_set": record.policy_set,
        "decision": record.decision,
        "matched_policies": list(record.matched_policies),
        "matched_rules": list(record.matched_rules),
        "reason": record.reason,
        "context_digest": record.context_digest,
        "context": _normal(msgspec.to_builtins(record.context, enc_hook=str, str_keys=True)),
        "detail": _normal(msgspec.to_builtins(record.detail, enc_hook=str, str_keys=True)),
        "latency_ms": _normal(float(record.latency_ms)),
        "created_at": record.created_at.astimezone(UTC).isoformat(),
        "chain": {"writer": writer, "seq": seq, "prev": prev},
    }
    data = _encoder.encode(doc)
    if b"\\u0000" in data:  # stored as U+FFFD (jsonb refuses NUL): hash what is stored
        data = _encoder.encode(_decoder.decode(_NUL_ESCAPE.sub(rb"\1\\ufffd", data)))
    return data


def record_hash(record: DecisionRecord, writer: str, seq: int, prev: str) -> str:
    """`sha256:<hex>` of `canonical_record`."""
    digest = hashlib.sha256(canonical_record(record, writer, seq, prev)).hexdigest()
    return "sha256:" + digest


class ChainWriter:
    """Links records into one writer's chain, in the order `link` is called.

    Not thread-safe: a log calls it from its one writer (the event loop thread).
    """

    def __init__(self, writer: str | None = None) -> None:
        self.writer = writer or new_writer_id()
        self.seq = 0
        self.head = GENESIS

    def link(self, record: DecisionRecord) -> DecisionRecord:
        """The record with its digest filled in and its link; a linked record is kept as is."""
        record = with_digest(record)
        if record.chain is not None:
            return record
        self.seq += 1
        digest = record_hash(record, self.writer, self.seq, self.head)
        link = ChainLink(writer=self.writer, seq=self.seq, prev=self.head, hash=digest)
        self.head = digest
        return msgspec.structs.replace(record, chain=link)


ProblemKind = Literal["altered", "broken", "missing", "duplicate"]


class ChainProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One broken or missing link.

    `altered`: the record's hash does not match its content (edited in place);
    `broken`: its `prev` is not the hash of the record before it (a record was
    replaced or moved); `missing`: seqs `seq`..`last` have no record (deleted);
    `duplicate`: two records claim the same seq.
    """

    kind: ProblemKind
    writer: str
    seq: int
    last: int | None = None
    request_id: str | None = None
    message: str


class ChainReport(msgspec.Struct, frozen=True, kw_only=True):
    """What `ChainVerifier` found; `problems` holds the first 100, in chain order."""

    records: int
    chained: int
    unchained: int
    writers: int
    problem_count: int
    problems: tuple[ChainProblem, ...]

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def first(self) -> ChainProblem | None:
        return self.problems[0] if self.problems else None


class ChainVerifier:
    """Checks records fed in chain order (by writer, then seq); `report()` at the end.

    A chain can only show what was removed *before* its last stored record: a
    truncated tail, or a whole writer's chain deleted, leaves no gap (see
    docs/reliability.md on anchoring the heads).
    """

    def __init__(self) -> None:
        self.records = self.unchained = self.writers = self.problem_count = 0
        self._problems: list[ChainProblem] = []
        self._writer: str | None = None
        self._expected, self._prev = 1, GENESIS

    def feed(self, record: DecisionRecord) -> None:
        self.records += 1
        link = record.chain
        if link is None:
            self.unchained += 1
            return
        if link.writer != self._writer:
            self._writer, self._expected, self._prev = link.writer, 1, GENESIS
            self.writers += 1
        self._check(record, link)
        self._expected = max(self._expected, link.seq + 1)
        self._prev = link.hash

    def _check(self, record: DecisionRecord, link: ChainLink) -> None:
        rid, w = record.request_id, link.writer
        if link.seq < self._expected:
            self._add("duplicate", w, link.seq, rid, f"seq {link.seq} appears again")
            return
        gap = link.seq > self._expected
        if gap:
            last = link.seq - 1
            self._add(
                "missing",
                w,
                self._expected,
                None,
                f"records {self._expected}..{last} are missing (deleted?)",
                last=last,
            )
        if record_hash(record, w, link.seq, link.prev) != link.hash:
            self._add("altered", w, link.seq, rid, "the record does not match its hash (edited?)")
        elif not gap and link.prev != self._prev:
            self._add(
                "broken",
                w,
                link.seq,
                rid,
                f"prev is not the hash of record {link.seq - 1} (replaced or moved?)",
            )

    def _add(
        self,
        kind: ProblemKind,
        writer: str,
        seq: int,
        request_id: str | None,
        what: str,
        *,
        last: int | None = None,
    ) -> None:
        self.problem_count += 1
        if len(self._problems) < _MAX_PROBLEMS:
            message = f"writer {writer!r} seq {seq}: {what}"
            self._problems.append(
                ChainProblem(
                    kind=kind,
                    writer=writer,
                    seq=seq,
                    last=last,
                    request_id=request_id,
                    message=message,
                )
            )

    def report(self) -> ChainReport:
        return ChainReport(
            records=self.records,
            chained=self.records - self.unchained,
            unchained=self.unchained,
            writers=self.writers,
            problem_count=self.problem_count,
            problems=tuple(self._problems),
        )


def verify_records(records: Iterable[DecisionRecord]) -> ChainReport:
    """Verify records already in chain order (by writer, then seq)."""
    verifier = ChainVerifier()
    for record in records:
        verifier.feed(record)
    return verifier.report()
