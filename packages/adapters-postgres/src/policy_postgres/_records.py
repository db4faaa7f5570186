"""DecisionRecord <-> PostgreSQL: COPY data for the writer, rows for the queries."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import msgspec
from policy_core.model import Decision
from policy_core.ports import ChainLink, DecisionRecord

__all__ = ["COPY", "copy_lines", "from_row", "instant"]

_context_decoder = msgspec.json.Decoder(dict[str, Any])
_decision_decoder = msgspec.json.Decoder(Decision)
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")
COPY = b"COPY decision_log_staging (doc) FROM STDIN"


def instant(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError("invalid cursor; pass back a next_cursor unchanged")
    return at


def copy_lines(lines: bytes) -> bytes:
    """COPY text-format data of spool lines (`spool.encode_line`): one JSON document per line.

    msgspec escapes every control character, so a document never holds a raw
    newline or tab; only backslashes need doubling for COPY. jsonb refuses the
    NUL escape, so a NUL in a string is stored as U+FFFD.
    """
    if b"\\u0000" in lines:
        lines = _NUL_ESCAPE.sub(rb"\1\\ufffd", lines)
    return lines.replace(b"\\", b"\\\\")


def from_row(row: Any) -> DecisionRecord:
    return DecisionRecord(
        request_id=row[0],
        created_at=row[1],
        policy_set=row[2],
        decision=row[3],
        matched_policies=tuple(row[4]),
        matched_rules=tuple(row[5]),
        reason=row[6],
        context_digest=row[7],
        context=_context_decoder.decode(row[8]),
        detail=_decision_decoder.decode(row[9]),
        latency_ms=row[10],
        chain=None
        if row[11] is None
        else ChainLink(writer=row[11], seq=row[12], prev=row[13], hash=row[14]),
    )
