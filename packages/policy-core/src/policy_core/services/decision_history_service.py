"""DecisionHistoryService: the read side of the audit trail, as the APIs and the CLI see it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from policy_core.ports import (
    Clock,
    DecisionChainSource,
    DecisionHistory,
    DecisionLog,
    DecisionLogCounters,
    DecisionRecord,
    DecisionStats,
    HistoryQuery,
    Page,
)
from policy_core.services.decision_chain import ChainReport, ChainVerifier

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

    async def chain_size(self) -> int:
        """How many records `verify` will read."""
        return await self._chain_source().chain_size()

    async def verify(self, progress: Callable[[int], None] | None = None) -> ChainReport:
        """Check every writer's hash chain; `progress(n)` after each batch of n records.

        Raises NotImplementedError when the history keeps no chains.
        """
        verifier = ChainVerifier()
        batch = 0
        async for record in self._chain_source().chain_records(batch_size=1000):
            verifier.feed(record)
            batch += 1
            if batch == 1000 and progress is not None:
                progress(batch)
                batch = 0
        if batch and progress is not None:
            progress(batch)
        return verifier.report()

    def _chain_source(self) -> DecisionChainSource:
        if not isinstance(self._history, DecisionChainSource):
            raise NotImplementedError("this decision history keeps no hash chains")
        return self._history

    def counters(self) -> DecisionLogCounters:
        """What the decision log has done since it started (no I/O)."""
        return self._log.counters()
