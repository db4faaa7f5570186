"""DecisionHistoryService: the read side of the audit trail, as the APIs and the CLI see it."""

from __future__ import annotations

from datetime import timedelta

from policy_core.ports import (
    Clock,
    DecisionHistory,
    DecisionLog,
    DecisionLogCounters,
    DecisionRecord,
    DecisionStats,
    HistoryQuery,
    Page,
)

__all__ = ["DecisionHistoryService"]

MAX_PAGE = 1000
MAX_DAYS = 366


class DecisionHistoryService:
    """History pages, statistics over the last days, and the log's counters.

    Reads through the DecisionHistory port and asks the DecisionLog (the
    writer the evaluations append to) only for its counters: the APIs never
    hold the adapter, nor guess what it can report.
    """

    def __init__(self, history: DecisionHistory, log: DecisionLog, clock: Clock) -> None:
        self._history = history
        self._log = log
        self._clock = clock

    async def history(
        self, query: HistoryQuery, *, limit: int = 50, cursor: str | None = None
    ) -> Page[DecisionRecord]:
        """Records matching `query`, newest first; `limit` in 1..1000.

        A cursor that is not a `next_cursor` this history returned raises ValueError.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        try:
            return await self._history.history(query, limit=limit, cursor=cursor)
        except (ValueError, TypeError, IndexError, KeyError):
            if cursor is None:
                raise
            raise ValueError("invalid cursor; pass back a next_cursor unchanged") from None

    async def stats(self, days: int) -> DecisionStats:
        """Counts and latency percentiles of the last `days` days (1..366), up to now."""
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"days must be between 1 and {MAX_DAYS}, got {days}")
        until = self._clock.now()
        return await self._history.stats(until - timedelta(days=days), until)

    def counters(self) -> DecisionLogCounters:
        """What the decision log has done since it started (no I/O)."""
        return self._log.counters()
