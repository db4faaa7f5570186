"""DecisionHistoryService: what the APIs read of the audit trail, over the memory log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from policy_core.memory import ManualClock, MemoryDecisionLog
from policy_core.ports import HistoryQuery
from policy_core.services import DecisionHistoryService
from policy_core.testing._support import T0, decision_record


def _service() -> tuple[DecisionHistoryService, MemoryDecisionLog]:
    log = MemoryDecisionLog(max_records=2)
    return DecisionHistoryService(log, log, ManualClock(T0 + timedelta(hours=1))), log


async def test_stats_cover_the_last_days_up_to_the_clock() -> None:
    service, log = _service()
    log.append(decision_record("in", at=T0))
    log.append(decision_record("old", at=T0 - timedelta(days=3)))
    stats = await service.stats(2)
    assert stats.total == 1
    assert stats.until == T0 + timedelta(hours=1)
    assert stats.since == stats.until - timedelta(days=2)


async def test_counters_are_the_logs_typed_counters() -> None:
    service, log = _service()
    for name in ("a", "b", "c", "c"):
        log.append(decision_record(name))
    counters = service.counters()
    assert (counters.appended, counters.written, counters.dropped) == (4, 3, 1)
    assert counters.queued == 0


@pytest.mark.parametrize("cursor", ["garbage", "W10", "WyJ4Il0"])
async def test_a_bad_cursor_is_a_value_error(cursor: str) -> None:
    service, _ = _service()
    with pytest.raises(ValueError, match="invalid cursor"):
        await service.history(HistoryQuery(), cursor=cursor)


async def test_limits_and_days_are_bounded() -> None:
    service, _ = _service()
    with pytest.raises(ValueError, match="limit"):
        await service.history(HistoryQuery(), limit=0)
    with pytest.raises(ValueError, match="days"):
        await service.stats(367)
