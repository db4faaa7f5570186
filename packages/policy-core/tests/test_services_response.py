"""EvaluationService.evaluate_response: facts, decision log link, settlement (spec 7.1, 7.3)."""

from __future__ import annotations

from typing import Any

from policy_core import PolicyEngine, load_policy_text
from policy_core.memory import ManualClock, MemoryDecisionLog, MemoryUsageStore
from policy_core.ports import HistoryQuery
from policy_core.services import (
    EngineHolder,
    EvaluationRequest,
    EvaluationService,
    ResponseEvaluationRequest,
    response_record_id,
)
from policy_core.testing import T0

POLICIES = """\
metadata: {id: spend}
rules:
  - id: cap
    condition: "budget.spent(team.id, 'day') + llm.estimated_cost > 10"
    action: {decision: deny, reason: over budget}
---
metadata: {id: answers}
rules:
  - id: pii
    phase: response
    condition: response.contains_pii
    action: {decision: warn, reason: pii}
    obligations: [{type: redact, fields: [response.text]}]
  - id: many-answers
    phase: response
    condition: "rate_limit.count(user.id, '1m') > 1"
    action: {decision: deny, reason: too many answers}
"""

CONTEXT: dict[str, Any] = {
    "user": {"id": "u1"},
    "team": {"id": "t1"},
    "llm": {"model": "gpt-4o", "max_tokens": 1000},
}


def service() -> tuple[EvaluationService, MemoryUsageStore, MemoryDecisionLog]:
    clock = ManualClock(T0)
    usage = MemoryUsageStore(clock)
    log = MemoryDecisionLog()
    holder = EngineHolder(PolicyEngine(load_policy_text(POLICIES)))
    return EvaluationService(holder, usage=usage, log=log, clock=clock), usage, log


async def test_a_response_decision_is_logged_linked_to_its_request() -> None:
    svc, _, log = service()
    request = await svc.evaluate(EvaluationRequest(context=CONTEXT, request_id="req-1"))
    assert request.decision.decision == "allow"
    answer = await svc.evaluate_response(
        ResponseEvaluationRequest(
            context=CONTEXT, response={"text": "mail ann@example.com"}, request_id="req-1"
        )
    )
    assert answer.request_id == "req-1"
    assert answer.decision.decision == "warn"
    assert answer.decision.modifications == {"response.text": "mail [REDACTED:email]"}
    page = await log.history(HistoryQuery(request_id=response_record_id("req-1")), limit=10)
    (record,) = page.items
    assert record.decision == "warn"
    assert record.detail == answer.decision
    # the stored context carries the response, redacted as the decision says
    assert record.context["response"] == {"text": "mail [REDACTED:email]"}
    assert record.context["user"] == {"id": "u1"}
    requested = await log.history(HistoryQuery(request_id="req-1"), limit=10)
    assert [r.decision for r in requested.items] == ["allow"]


async def test_response_phase_facts_are_gathered() -> None:
    svc, _, _ = service()
    judged = [
        (
            await svc.evaluate_response(
                ResponseEvaluationRequest(context=CONTEXT, response={"text": "ok"})
            )
        ).decision.decision
        for _ in range(3)
    ]
    assert judged == ["allow", "deny", "deny"]  # each judged response counts, this one included


async def test_a_dry_run_response_is_not_logged_and_not_counted() -> None:
    svc, _, log = service()
    for _ in range(3):
        result = await svc.evaluate_response(
            ResponseEvaluationRequest(
                context=CONTEXT, response={"text": "ok"}, dry_run=True, request_id="r"
            )
        )
        assert result.decision.decision == "allow"
    assert (await log.history(HistoryQuery(), limit=10)).items == ()


async def test_the_response_settles_the_reservation_at_its_cost() -> None:
    svc, usage, _ = service()
    allowed = await svc.evaluate(EvaluationRequest(context=CONTEXT))
    reservation = allowed.decision.reservation
    assert reservation is not None
    assert reservation.amount == 0.01  # 1,000 output tokens of gpt-4o
    usage_doc = {"prompt_tokens": 1000, "completion_tokens": 100}
    await svc.evaluate_response(
        ResponseEvaluationRequest(
            context=CONTEXT,
            response={"text": "ok", "usage": usage_doc},
            reservation=reservation.id,
        )
    )
    # settled: the reservation is now the response's cost (1,000 in + 100 out of gpt-4o)
    facts = await usage.fetch([("budget.spent", "t1", "day")], record=False)
    assert facts[("budget.spent", "t1", "day")] == 0.0035
    assert await usage.settle(reservation.id, 1.0) is None  # already settled
