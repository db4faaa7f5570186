"""In-memory decision log (writer and reader), with the same query semantics as PostgreSQL's."""

from __future__ import annotations

import hashlib
import math
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec

from policy_core.cursors import decode_cursor, encode_cursor
from policy_core.ports import (
    DecisionLogCounters,
    DecisionRecord,
    DecisionStats,
    HistoryQuery,
    Page,
)
from policy_core.services.decision_chain import ChainWriter
from policy_core.services.evaluation_service import canonical_json

_context_decoder = msgspec.json.Decoder(dict[str, Any])
_NO_CONTEXT: dict[str, Any] = {}  # stands in for the context inside a stored record

__all__ = ["MemoryDecisionLog", "nearest_rank"]


def nearest_rank(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (what PostgreSQL's percentile_disc returns)."""
    index = max(math.ceil(fraction * len(sorted_values)) - 1, 0)
    return sorted_values[index]


class MemoryDecisionLog:
    """Keeps records by request_id; `max_records` bounds it (oldest dropped first).

    A record's context is kept as its canonical JSON (the bytes its digest is
    taken of; the digest is computed when the record is read, so it is what
    `with_digest` would give), not as the caller's objects: a full log would
    otherwise keep every caller's context alive, tens of objects each, for
    the garbage collector to scan again and again.

    Records are linked into the hash chain lazily, in append order, when the
    log is next read (or when a full log evicts a record not linked yet), so
    that the 10 µs of hashing stay off the request path.
    """

    def __init__(self, *, max_records: int | None = None, writer: str | None = None) -> None:
        # OrderedDict: evicting the oldest is O(1); `del d[next(iter(d))]` on a plain dict
        # walks the deleted slots at its front and degrades as the log turns over.
        self._records: OrderedDict[str, tuple[DecisionRecord, bytes]] = OrderedDict()
        self._max = max_records
        self.appended = 0
        self.dropped = 0
        # Linked in append order when next read; a duplicate is never linked.
        self.chain = ChainWriter(writer)
        self._pending: deque[str] = deque()

    def append(self, record: DecisionRecord) -> None:
        self.appended += 1
        if record.request_id in self._records:
            return
        context = canonical_json(record.context)
        stored = msgspec.structs.replace(record, context=_NO_CONTEXT)
        self._records[record.request_id] = (stored, context)
        self._pending.append(record.request_id)
        if self._max is not None and len(self._records) > self._max:
            oldest = next(iter(self._records))
            if self._pending[0] == oldest:  # never read since: link it before it goes
                self._link(self._pending.popleft())
            self._records.popitem(last=False)
            self.dropped += 1

    def _link(self, request_id: str) -> None:
        stored, context = self._records[request_id]
        linked = self.chain.link(_restored(stored, context))
        self._records[request_id] = (msgspec.structs.replace(linked, context=_NO_CONTEXT), context)

    def _link_pending(self) -> None:
        while self._pending:
            self._link(self._pending.popleft())

    async def flush(self) -> None:
        return None

    def counters(self) -> DecisionLogCounters:
        """Stored at once: nothing is ever queued; `dropped` counts the oldest evicted."""
        return DecisionLogCounters(
            appended=self.appended,
            written=len(self._records) + self.dropped,
            dropped=self.dropped,
        )

    async def chain_size(self) -> int:
        return len(self._records)

    async def chain_records(self, *, batch_size: int = 1000) -> AsyncIterator[DecisionRecord]:
        """In chain order; with `max_records`, the evicted oldest leave a gap at the start."""
        self._link_pending()
        entries = sorted(
            self._records.values(),
            key=lambda e: (
                e[0].chain is None,
                e[0].chain.writer if e[0].chain else "",
                e[0].chain.seq if e[0].chain else 0,
            ),
        )
        for entry in entries:
            yield _restored(*entry)

    def __len__(self) -> int:
        return len(self._records)

    async def history(
        self, query: HistoryQuery, *, limit: int = 50, cursor: str | None = None
    ) -> Page[DecisionRecord]:
        after = decode_cursor(cursor, str, str) if cursor else None
        self._link_pending()
        rows = sorted(
            (e for e in self._records.values() if _matches(e[0], query)),
            key=lambda e: (e[0].created_at, e[0].request_id),
            reverse=True,
        )
        if after is not None:
            bound = (_instant(str(after[0])), str(after[1]))
            rows = [e for e in rows if (e[0].created_at, e[0].request_id) < bound]
        page = [_restored(*e) for e in rows[: max(limit, 0)]]
        next_cursor = None
        if len(rows) > len(page) and page:
            next_cursor = encode_cursor(page[-1].created_at.isoformat(), page[-1].request_id)
        return Page(items=tuple(page), next_cursor=next_cursor)

    async def stats(self, since: datetime, until: datetime) -> DecisionStats:
        rows = [r for r, _ in self._records.values() if since <= r.created_at < until]
        latencies = sorted(r.latency_ms for r in rows)
        percentiles = (
            {name: nearest_rank(latencies, q) for name, q in _PERCENTILES} if latencies else {}
        )
        return DecisionStats(
            total=len(rows),
            by_decision=dict(Counter(r.decision for r in rows)),
            by_policy=dict(Counter(p for r in rows for p in r.matched_policies)),
            by_rule=dict(Counter(x for r in rows for x in r.matched_rules)),
            latency_ms=percentiles,
            since=since,
            until=until,
        )


def _restored(record: DecisionRecord, context: bytes) -> DecisionRecord:
    digest = record.context_digest or "sha256:" + hashlib.sha256(context).hexdigest()
    return msgspec.structs.replace(
        record, context=_context_decoder.decode(context), context_digest=digest
    )


def _instant(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError("invalid cursor; pass back a next_cursor unchanged")
    return at


_PERCENTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def _matches(record: DecisionRecord, q: HistoryQuery) -> bool:
    return (
        (q.request_id is None or record.request_id == q.request_id)
        and (q.policy_id is None or q.policy_id in record.matched_policies)
        and (q.decision is None or record.decision == q.decision)
        and (q.since is None or record.created_at >= q.since)
        and (q.until is None or record.created_at < q.until)
        and (not q.shadow_differs or _shadow_differs(record))
    )


def _shadow_differs(record: DecisionRecord) -> bool:
    shadow = record.detail.shadow
    return shadow is not None and shadow.decision != record.decision
