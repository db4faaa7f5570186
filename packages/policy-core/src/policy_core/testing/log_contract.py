"""Contract suite of a decision log: DecisionLog (writer) and DecisionHistory (reader).

Provide an async fixture `decision_log` yielding an empty, started log that
implements both ports.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Protocol

import msgspec

from policy_core.ports import (
    DecisionChainSource,
    DecisionHistory,
    DecisionLog,
    DecisionRecord,
    HistoryQuery,
)
from policy_core.services.decision_chain import GENESIS, verify_records
from policy_core.testing._support import T0, decision_record, raises

__all__ = ["DecisionLogContract", "LogAndHistory"]


class LogAndHistory(DecisionLog, DecisionHistory, DecisionChainSource, Protocol):
    """What every decision-log adapter is: the writer and the reader of one trail, chained."""


def _unlinked(records: tuple[DecisionRecord, ...]) -> tuple[DecisionRecord, ...]:
    return tuple(msgspec.structs.replace(r, chain=None) for r in records)


async def _chain(log: LogAndHistory) -> list[DecisionRecord]:
    return [r async for r in log.chain_records(batch_size=3)]


def _at(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


class DecisionLogContract:
    """Append, idempotency, history filters and pagination, stats."""

    async def test_append_flush_then_history(self, decision_log: LogAndHistory) -> None:
        record = decision_record(
            "r1",
            decision="deny",
            policies=("p1",),
            rules=("p1/a",),
            context={"llm": {"prompt": "[REDACTED]"}, "n": [1, 2.5, None]},
        )
        decision_log.append(record)
        await decision_log.flush()
        page = await decision_log.history(HistoryQuery(request_id="r1"))
        assert _unlinked(page.items) == (record,)
        assert page.next_cursor is None
        link = page.items[0].chain
        assert link is not None
        assert (link.seq, link.prev) == (1, GENESIS)

    async def test_same_request_id_is_stored_once(self, decision_log: LogAndHistory) -> None:
        decision_log.append(decision_record("dup", decision="allow"))
        decision_log.append(decision_record("dup", decision="allow"))
        await decision_log.flush()
        decision_log.append(decision_record("dup", decision="allow"))
        await decision_log.flush()
        page = await decision_log.history(HistoryQuery())
        assert [r.request_id for r in page.items] == ["dup"]
        # A duplicate is not stored again, and leaves no gap in its writer's chain.
        report = verify_records(await _chain(decision_log))
        assert report.ok, report.problems
        assert report.unchained == 0

    async def test_records_form_one_verified_chain_in_append_order(
        self, decision_log: LogAndHistory
    ) -> None:
        for i in range(10):  # created_at out of order: the chain follows the appends
            decision_log.append(
                decision_record(f"c{i}", at=T0 + _at(10 - i), context={"i": i, "big": 1e20})
            )
        await decision_log.flush()
        chain = await _chain(decision_log)
        assert await decision_log.chain_size() == 10
        assert [r.request_id for r in chain] == [f"c{i}" for i in range(10)]
        links = [r.chain for r in chain]
        assert [link.seq for link in links if link] == list(range(1, 11))
        assert all(b.prev == a.hash for a, b in itertools.pairwise(links) if a and b)
        report = verify_records(chain)
        assert report.ok, report.problems
        assert (report.records, report.chained, report.writers) == (10, 10, 1)
        edited = [*chain[:4], msgspec.structs.replace(chain[4], decision="deny"), *chain[5:]]
        first = verify_records(edited).first
        assert first is not None
        assert (first.kind, first.seq) == ("altered", 5)
        first = verify_records([*chain[:2], *chain[3:]]).first
        assert first is not None
        assert (first.kind, first.seq, first.last) == ("missing", 3, 3)

    async def test_history_newest_first_with_filters(self, decision_log: LogAndHistory) -> None:
        decision_log.append(decision_record("a", decision="allow", at=T0))
        decision_log.append(
            decision_record("b", decision="deny", at=T0 + _at(1), policies=("p1",), rules=("p1/x",))
        )
        decision_log.append(
            decision_record("c", decision="warn", at=T0 + _at(2), policies=("p1", "p2"))
        )
        await decision_log.flush()

        async def ids(q: HistoryQuery) -> list[str]:
            return [r.request_id for r in (await decision_log.history(q)).items]

        assert await ids(HistoryQuery()) == ["c", "b", "a"]
        assert await ids(HistoryQuery(decision="deny")) == ["b"]
        assert await ids(HistoryQuery(policy_id="p1")) == ["c", "b"]
        assert await ids(HistoryQuery(policy_id="p2")) == ["c"]
        assert await ids(HistoryQuery(since=T0 + _at(1))) == ["c", "b"]
        assert await ids(HistoryQuery(until=T0 + _at(1))) == ["a"]
        assert await ids(HistoryQuery(since=T0, until=T0 + _at(2), policy_id="p1")) == ["b"]
        assert await ids(HistoryQuery(request_id="zzz")) == []

    async def test_history_shadow_differs(self, decision_log: LogAndHistory) -> None:
        decision_log.append(decision_record("same", decision="allow", at=T0, shadow="allow"))
        decision_log.append(decision_record("none", decision="allow", at=T0 + _at(1)))
        decision_log.append(decision_record("dd", decision="allow", at=T0 + _at(2), shadow="deny"))
        decision_log.append(decision_record("dw", decision="deny", at=T0 + _at(3), shadow="warn"))
        await decision_log.flush()

        async def ids(q: HistoryQuery) -> list[str]:
            return [r.request_id for r in (await decision_log.history(q)).items]

        assert await ids(HistoryQuery(shadow_differs=True)) == ["dw", "dd"]
        assert await ids(HistoryQuery(shadow_differs=True, decision="allow")) == ["dd"]
        assert await ids(HistoryQuery()) == ["dw", "dd", "none", "same"]
        page = await decision_log.history(HistoryQuery(request_id="dd"))
        shadow = page.items[0].detail.shadow
        assert shadow is not None
        assert (shadow.decision, shadow.matched_rules) == ("deny", ("draft/r",))

    async def test_counters_count_appends(self, decision_log: LogAndHistory) -> None:
        before = decision_log.counters().appended
        decision_log.append(decision_record("c1"))
        decision_log.append(decision_record("c2"))
        await decision_log.flush()
        after = decision_log.counters()
        assert after.appended == before + 2
        assert after.queued == 0
        assert after.dropped == 0

    async def test_history_pagination(self, decision_log: LogAndHistory) -> None:
        for i in range(7):
            # Two records share each timestamp: ties are broken by request_id.
            decision_log.append(decision_record(f"r{i}", at=T0 + _at(i // 2)))
        await decision_log.flush()
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await decision_log.history(HistoryQuery(), limit=3, cursor=cursor)
            pages += 1
            seen.extend(r.request_id for r in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]
        assert pages == 3

    async def test_stats_counts_and_percentiles(self, decision_log: LogAndHistory) -> None:
        for i in range(1, 101):
            decision = "deny" if i % 4 == 0 else "allow"
            policies = ("p1",) if decision == "deny" else ()
            rules = ("p1/r",) if decision == "deny" else ()
            decision_log.append(
                decision_record(
                    f"s{i}",
                    decision=decision,
                    at=T0 + timedelta(seconds=i),
                    policies=policies,
                    rules=rules,
                    latency_ms=float(i),
                )
            )
        # Outside the window: not counted.
        decision_log.append(decision_record("late", at=T0 + timedelta(days=2), latency_ms=999.0))
        await decision_log.flush()
        stats = await decision_log.stats(T0, T0 + timedelta(days=1))
        assert stats.total == 100
        assert stats.by_decision == {"allow": 75, "deny": 25}
        assert stats.by_policy == {"p1": 25}
        assert stats.by_rule == {"p1/r": 25}
        assert stats.latency_ms == {"p50": 50.0, "p95": 95.0, "p99": 99.0}

    async def test_stats_of_empty_window(self, decision_log: LogAndHistory) -> None:
        stats = await decision_log.stats(T0, T0 + timedelta(hours=1))
        assert stats.total == 0
        assert stats.by_decision == {}
        assert stats.latency_ms == {}

    async def test_malformed_cursor_raises_value_error(self, decision_log: LogAndHistory) -> None:
        for bad in ("garbage", "W10", "WyJ4IiwieSJd", "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwieCJd"):
            with raises(ValueError):
                await decision_log.history(HistoryQuery(), cursor=bad)
