"""Policy admission (Governance compliance check) and Edge distribution in the PolicyService.

Over the memory fakes: every API reaches these through the service, so the
HTTP, gRPC and CLI tests only check how each answers the two errors.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from policy_core.errors import ComplianceUnavailable, PolicyNotCompliant
from policy_core.memory import (
    MemoryCompliance,
    MemoryEdgePublisher,
    MemoryPolicyStore,
    MemoryUsageSink,
    MemoryUsageStore,
    SystemClock,
)
from policy_core.ports import ComplianceViolation, UsageEvent
from policy_core.services import EngineHolder, PolicyService, UsageService

DOC = """\
metadata: {id: p1, priority: 7}
status: {status}
rules:
  - id: r
    condition: "user.id == 'bad'"
    action: {decision: deny, reason: bad}
"""


def text(status: str = "active") -> str:
    return DOC.replace("{status}", status)


def service(
    compliance: MemoryCompliance | None = None, edge: MemoryEdgePublisher | None = None
) -> tuple[PolicyService, MemoryPolicyStore]:
    store = MemoryPolicyStore(SystemClock())
    return (
        PolicyService(
            reader=store, writer=store, holder=EngineHolder(), compliance=compliance, edge=edge
        ),
        store,
    )


VIOLATION = ComplianceViolation(
    rule="gdpr-logging", severity="high", description="audit must be on", regulation="GDPR"
)


async def test_every_write_but_delete_and_deactivation_is_checked() -> None:
    checker = MemoryCompliance()
    svc, _ = service(checker)
    created = await svc.create(text("draft"))
    await svc.update("p1", text("draft").replace("bad", "worse"), expected_revision=1)
    await svc.set_status("p1", "active")
    await svc.set_status("p1", "deprecated")  # stepping down needs no admission
    await svc.rollback("p1", created.revision)
    await svc.delete("p1")
    assert checker.checks == [
        ("p1", "create"),
        ("p1", "update"),
        ("p1", "activate"),
        ("p1", "update"),
    ]


async def test_non_compliant_rejects_the_write_and_stores_nothing() -> None:
    svc, store = service(MemoryCompliance([VIOLATION]))
    with pytest.raises(PolicyNotCompliant) as caught:
        await svc.create(text())
    assert caught.value.violations == [
        {
            "rule": "gdpr-logging",
            "severity": "high",
            "description": "audit must be on",
            "regulation": "GDPR",
        }
    ]
    assert caught.value.code == "policy_not_compliant"
    assert "gdpr-logging (high): audit must be on" in str(caught.value)
    assert await store.load_all() == []
    assert not svc.holder.current.policies


async def test_unreachable_governance_rejects_never_passes() -> None:
    checker = MemoryCompliance()
    svc, store = service(checker)
    await svc.create(text("draft"))
    checker.unreachable = "timed out after 200 ms"
    with pytest.raises(ComplianceUnavailable) as caught:
        await svc.set_status("p1", "active")
    assert caught.value.code == "compliance_unavailable"
    assert "timed out after 200 ms" in str(caught.value)
    assert (await store.get("p1")).status == "draft"


async def test_every_change_is_queued_for_the_edge_newest_wins() -> None:
    edge = MemoryEdgePublisher()
    svc, _ = service(edge=edge)
    await svc.create(text())
    await svc.update("p1", text().replace("bad", "worse"), expected_revision=1)
    (record, policy_set) = edge.pending["p1"]
    assert record.revision == 2  # revision 1 was superseded while queued
    assert policy_set == svc.holder.current.policy_set()
    edge.acknowledge()
    await svc.set_status("p1", "draft")
    await svc.rollback("p1", 1)
    await svc.delete("p1")
    record, _ = edge.pending["p1"]
    assert record.deleted
    assert record.revision == 4
    assert [r.revision for r, _ in edge.deployed] == [2]


async def test_edge_sync_pushes_the_active_set() -> None:
    edge = MemoryEdgePublisher()
    svc, _ = service(edge=edge)
    await svc.create(text())
    await svc.create(text("draft").replace("id: p1", "id: p2"))
    pushed = await svc.edge_sync()
    assert [r.id for r in pushed] == ["p1"]
    assert edge.synced == [(svc.holder.current.policy_set(), tuple(pushed))]
    plain, _ = service()
    with pytest.raises(ValueError, match="LLM_POLICY_EDGE_URL"):
        await plain.edge_sync()


async def test_recorded_usage_is_reported_to_the_usage_sink() -> None:
    sink = MemoryUsageSink()
    usage = UsageService(MemoryUsageStore(SystemClock()), sink)
    at = datetime(2026, 3, 14, 12, tzinfo=UTC)
    await usage.record_spend(
        "user:u1",
        0.5,
        at,
        event=UsageEvent(request_id="q1", cost=0, timestamp=at, user_id="u1", model="m"),
    )
    await usage.record_spend("team:t1", 1.25)
    first, second = sink.events
    assert (first.request_id, first.cost, first.timestamp, first.user_id) == ("q1", 0.5, at, "u1")
    assert second.cost == 1.25
    assert len(second.request_id) == 32
    with pytest.raises(ValueError, match="finite"):
        await usage.record_spend("k", -1.0)
    assert len(sink.events) == 2  # a refused spend is not reported


async def test_a_settled_response_is_reported_to_the_usage_sink() -> None:
    from policy_core import PolicyEngine, load_policy_text
    from policy_core.memory import ManualClock
    from policy_core.services import EvaluationRequest, EvaluationService, ResponseEvaluationRequest
    from policy_core.testing import T0

    spend = """\
metadata: {id: spend}
rules:
  - id: cap
    condition: "budget.spent(team.id, 'day') + llm.estimated_cost > 10"
    action: {decision: deny, reason: over budget}
"""
    clock = ManualClock(T0)
    sink = MemoryUsageSink()
    svc = EvaluationService(
        EngineHolder(PolicyEngine(load_policy_text(spend))),
        usage=MemoryUsageStore(clock),
        clock=clock,
        usage_sink=sink,
    )
    context = {
        "user": {"id": "u1"},
        "team": {"id": "t1"},
        "llm": {"provider": "openai", "model": "gpt-4o", "max_tokens": 1000},
    }
    allowed = await svc.evaluate(EvaluationRequest(context=context, request_id="q-1"))
    reservation = allowed.decision.reservation
    assert reservation is not None
    assert sink.events == []  # a reservation is not usage yet
    response = {"text": "ok", "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}
    request = ResponseEvaluationRequest(
        context=context, response=response, reservation=reservation.id, request_id="q-1"
    )
    await svc.evaluate_response(request)
    (event,) = sink.events
    assert (event.request_id, event.cost, event.timestamp) == ("q-1", 0.0035, T0)
    assert (event.user_id, event.team_id, event.project_id) == ("u1", "t1", None)
    assert (event.provider, event.model) == ("openai", "gpt-4o")
    assert (event.prompt_tokens, event.completion_tokens) == (1000, 100)
    await svc.evaluate_response(request)  # already settled: nothing more is reported
    assert len(sink.events) == 1
