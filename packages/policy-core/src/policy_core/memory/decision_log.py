"""In-memory decision log, with the same query semantics as the PostgreSQL one."""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from datetime import datetime

from policy_core.cursors import decode_cursor, encode_cursor
from policy_core.ports import DecisionRecord, DecisionStats, HistoryQuery, Page
from policy_core.services.evaluation_service import with_digest

__all__ = ["MemoryDecisionLog", "nearest_rank"]


def nearest_rank(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (what PostgreSQL's percentile_disc returns)."""
    index = max(math.ceil(fraction * len(sorted_values)) - 1, 0)
    return sorted_values[index]


class MemoryDecisionLog:
    """Keeps records in a dict by request_id; `max_records` bounds it (oldest dropped first)."""

    def __init__(self, *, max_records: int | None = None) -> None:
        # OrderedDict: evicting the oldest is O(1); `del d[next(iter(d))]` on a plain dict
        # walks the deleted slots at its front and degrades as the log turns over.
        self._records: OrderedDict[str, DecisionRecord] = OrderedDict()
        self._max = max_records
        self.dropped = 0

    def append(self, record: DecisionRecord) -> None:
        if record.request_id in self._records:
            return
        self._records[record.request_id] = with_digest(record)
        if self._max is not None and len(self._records) > self._max:
            self._records.popitem(last=False)
            self.dropped += 1

    async def flush(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._records)

    async def history(
        self, query: HistoryQuery, *, limit: int = 50, cursor: str | None = None
    ) -> Page[DecisionRecord]:
        after = decode_cursor(cursor, str, str) if cursor else None
        rows = sorted(
            (r for r in self._records.values() if _matches(r, query)),
            key=lambda r: (r.created_at, r.request_id),
            reverse=True,
        )
        if after is not None:
            bound = (_instant(str(after[0])), str(after[1]))
            rows = [r for r in rows if (r.created_at, r.request_id) < bound]
        page = rows[: max(limit, 0)]
        next_cursor = None
        if len(rows) > len(page) and page:
            next_cursor = encode_cursor(page[-1].created_at.isoformat(), page[-1].request_id)
        return Page(items=tuple(page), next_cursor=next_cursor)

    async def stats(self, since: datetime, until: datetime) -> DecisionStats:
        rows = [r for r in self._records.values() if since <= r.created_at < until]
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
    )
