"""Budget reservations (spec 7.3) through the EvaluationService and the library, on a fake clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from hypothesis import given, settings, strategies as st
from policy_core import PolicyEngine, load_policy_text
from policy_core.memory import ManualClock, MemoryUsageStore
from policy_core.services import (
    EngineHolder,
    EvaluationRequest,
    EvaluationService,
    UsageService,
)
from policy_core.testing import T0

TEN_DOLLARS = """\
metadata: {id: budget}
rules:
  - id: over-budget
    condition: "budget.spent(user.id, 'day') + llm.estimated_cost > 10"
    action: {decision: deny, reason: daily budget exhausted}
"""

TEAM_AND_USER = """\
metadata: {id: budgets}
rules:
  - id: user-cap
    condition: "budget.spent(user.id, 'day') + llm.estimated_cost > 10"
    action: {decision: deny, reason: user budget}
  - id: team-cap
    condition: "budget.spent('team:' + team.id, 'month') + llm.estimated_cost > 100"
    action: {decision: deny, reason: team budget}
"""

NO_BUDGET = """\
metadata: {id: plain}
rules:
  - id: bad
    condition: "user.id == 'bad'"
    action: {decision: deny, reason: bad}
"""


class Harness:
    def __init__(self, text: str = TEN_DOLLARS, ttl: float = 600) -> None:
        self.clock = ManualClock(T0)
        self.usage = MemoryUsageStore(self.clock)
        self.holder = EngineHolder(PolicyEngine(load_policy_text(text)))
        self.service = EvaluationService(
            self.holder, usage=self.usage, clock=self.clock, reservation_ttl=ttl
        )
        self.spend = UsageService(self.usage)

    async def wave(self, n: int, cost: float, **ctx: Any) -> list[Any]:
        """`n` concurrent requests of user u1, each estimated at `cost`."""
        context = {"user": {"id": "u1"}, "team": {"id": "t1"}, "llm": {"estimated_cost": cost}}
        context.update(ctx)
        results = await asyncio.gather(
            *(self.service.evaluate(EvaluationRequest(context=context)) for _ in range(n))
        )
        return [r.decision for r in results]

    async def spent(self, key: str = "u1", period: str = "day") -> float:
        fact = ("budget.spent", key, period)
        return float((await self.usage.fetch([fact]))[fact])


async def test_ten_dollars_admit_exactly_ten_one_dollar_requests() -> None:
    h = Harness()
    decisions = await h.wave(40, 1.0)
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 10
    for d in allowed:
        assert d.reservation is not None
        assert d.reservation.amount == 1.0
        assert d.reservation.keys == ("u1",)
        assert d.reservation.expires_at == T0 + timedelta(minutes=10)
    assert len({d.reservation.id for d in allowed if d.reservation}) == 10
    assert all(d.reservation is None for d in decisions if not d.allowed)  # a deny holds nothing
    assert await h.spent() == 10.0


async def test_settling_at_the_actual_cost_frees_the_difference() -> None:
    h = Harness()
    first = [d for d in await h.wave(40, 1.0) if d.allowed]
    for d in first:
        assert d.reservation is not None
        assert await h.spend.settle(d.reservation.id, 0.5) == ("u1",)
    assert await h.spent() == 5.0
    # $5 left: ten requests of $0.50 fit, exactly; the other 30 are denied.
    second = await h.wave(40, 0.5)
    assert sum(d.allowed for d in second) == 10
    assert await h.spent() == 10.0


async def test_after_settling_at_half_the_one_dollar_requests_fit_five_more() -> None:
    h = Harness()
    for d in await h.wave(40, 1.0):
        if d.reservation is not None:
            await h.spend.settle(d.reservation.id, 0.5)
    assert sum(d.allowed for d in await h.wave(40, 1.0)) == 5


async def test_unsettled_reservations_are_released_after_the_ttl() -> None:
    h = Harness(ttl=600)
    assert sum(d.allowed for d in await h.wave(40, 1.0)) == 10
    h.clock.advance(599)
    assert sum(d.allowed for d in await h.wave(5, 1.0)) == 0  # still held
    h.clock.advance(2)
    assert await h.spent() == 0.0
    assert sum(d.allowed for d in await h.wave(40, 1.0)) == 10


async def test_the_ttl_is_a_setting() -> None:
    h = Harness(ttl=30)
    decisions = await h.wave(1, 1.0)
    assert decisions[0].reservation is not None
    assert decisions[0].reservation.expires_at == T0 + timedelta(seconds=30)
    h.clock.advance(31)
    assert await h.spent() == 0.0


async def test_a_dry_run_reserves_nothing() -> None:
    h = Harness()
    context = {"user": {"id": "u1"}, "llm": {"estimated_cost": 4.0}}
    result = await h.service.evaluate(EvaluationRequest(context=context, dry_run=True))
    assert result.decision.allowed
    assert result.decision.reservation is None
    assert await h.spent() == 0.0


async def test_a_reservation_holds_every_budget_key_once() -> None:
    h = Harness(TEAM_AND_USER)
    (d,) = await h.wave(1, 2.5)
    assert d.reservation is not None
    assert d.reservation.keys == ("u1", "team:t1")
    assert await h.spent("u1", "day") == 2.5
    assert await h.spent("team:t1", "month") == 2.5
    assert await h.spend.settle(d.reservation.id, 1.0) == ("u1", "team:t1")
    assert await h.spent("team:t1", "month") == 1.0


async def test_no_budget_fact_no_reservation() -> None:
    h = Harness(NO_BUDGET)
    (d,) = await h.wave(1, 5.0)
    assert d.allowed
    assert d.reservation is None


async def test_an_unpriced_request_reserves_zero_and_can_be_settled() -> None:
    h = Harness()
    context = {"user": {"id": "u1"}, "llm": {"model": "no-such-model", "prompt": "hi"}}
    # `llm.estimated_cost` is null for an unknown model: the rule errors, and fails closed...
    result = await h.service.evaluate(EvaluationRequest(context=context))
    assert not result.decision.allowed
    assert result.decision.reservation is None
    assert await h.spent() == 0.0
    # ...while a policy that tolerates it admits with a reservation of 0, settled later.
    lenient = Harness(TEN_DOLLARS.replace("+ llm.estimated_cost > 10", "> 10"))
    result = await lenient.service.evaluate(EvaluationRequest(context=context))
    assert result.decision.reservation is not None
    assert result.decision.reservation.amount == 0.0
    assert await lenient.spend.settle(result.decision.reservation.id, 0.02) == ("u1",)
    assert await lenient.spent() == 0.02


async def test_the_library_reserves_like_the_service() -> None:
    clock = ManualClock(T0)
    usage = MemoryUsageStore(clock)
    engine = PolicyEngine(load_policy_text(TEN_DOLLARS))
    context = {"user": {"id": "u1"}, "llm": {"estimated_cost": 6.0}}
    first = await engine.evaluate_async(context, usage=usage, now=clock.time())
    second = await engine.evaluate_async(context, usage=usage, now=clock.time())
    assert first.allowed
    assert first.reservation is not None
    assert not second.allowed  # 6 held + 6 > 10
    assert second.reservation is None
    dry = await engine.evaluate_async(
        {"user": {"id": "u1"}, "llm": {"estimated_cost": 1.0}},
        usage=usage,
        record=False,
        now=clock.time(),
    )
    assert dry.allowed
    assert dry.reservation is None
    assert await usage.settle(first.reservation.id, 6.0) == ("u1",)


@settings(max_examples=60, deadline=None)
@given(
    cap=st.integers(min_value=0, max_value=30),
    costs=st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 5.0]), max_size=25),
)
def test_sequential_requests_are_admitted_exactly_while_they_fit(
    cap: int, costs: list[float]
) -> None:
    """One request at a time, admission is the exact running check `held + cost <= cap`."""
    policy = TEN_DOLLARS.replace("> 10", f"> {cap}")

    async def run() -> tuple[list[bool], float]:
        h = Harness(policy)
        got = []
        for cost in costs:
            (d,) = await h.wave(1, cost)
            got.append(d.allowed)
        return got, await h.spent()

    got, spent = asyncio.run(run())
    held, expected = 0.0, []
    for cost in costs:
        fits = held + cost <= cap
        expected.append(fits)
        held += cost if fits else 0.0
    assert got == expected
    assert spent == held
    assert spent <= cap
