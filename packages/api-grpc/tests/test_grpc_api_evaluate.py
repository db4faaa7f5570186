"""EvaluatePolicy (unary) and the first checks of the stream, through a grpclib client."""

from __future__ import annotations

from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from policy_core.ports import HistoryQuery
from policy_core.services import EvaluationRequest
from policy_grpc._generated.google.protobuf import Struct
from policy_grpc._generated.llm_policy.v1 import (
    EvaluatePolicyRequest,
    EvaluatePolicyStreamRequest,
    PolicyServiceStub,
)


async def test_unary_deny_carries_every_field(
    stub: PolicyServiceStub, kit: Any, bundle: Any
) -> None:
    reply = await stub.evaluate_policy(kit.eval_request(kit.SQL, request_id="r-1"))
    d = reply.decision
    assert d is not None
    expected = (await bundle.evaluation.evaluate(_core(kit.SQL))).decision
    assert d.request_id == "r-1"
    assert d.decision == "deny" == expected.decision
    assert d.allowed is False
    assert d.reason == "SQL for u-1"
    assert d.matched_policies == ["security"]
    assert d.matched_rules == ["security/block-sql"]
    assert d.obligations[0].to_dict() == {
        "type": "audit",
        "severity": "high",
        "alert": True,
        "rule": "security/block-sql",
    }
    assert d.policy_set == expected.policy_set
    assert d.shadow is None
    assert d.trace is None
    assert d.cached is False


async def test_unary_struct_context_gives_the_same_decision(
    stub: PolicyServiceStub, kit: Any
) -> None:
    by_json = await stub.evaluate_policy(kit.eval_request(kit.SQL))
    by_struct = await stub.evaluate_policy(EvaluatePolicyRequest(context=Struct.from_dict(kit.SQL)))
    assert by_json.decision is not None
    assert by_struct.decision is not None
    assert by_struct.decision.reason == by_json.decision.reason == "SQL for u-1"
    assert by_struct.decision.matched_rules == by_json.decision.matched_rules


async def test_unary_generates_a_request_id(stub: PolicyServiceStub, kit: Any) -> None:
    reply = await stub.evaluate_policy(kit.eval_request(kit.OK))
    assert reply.decision is not None
    assert reply.decision.decision == "allow"
    assert reply.decision.allowed is True
    assert len(reply.decision.request_id) >= 16


async def test_unary_trace_is_a_list_when_asked(stub: PolicyServiceStub, kit: Any) -> None:
    reply = await stub.evaluate_policy(kit.eval_request(kit.OK, trace=True))
    assert reply.decision is not None
    assert reply.decision.trace is not None
    trace = reply.decision.trace.to_dict()
    assert [(t["rule"], t["result"]) for t in trace] == [
        ("block-sql", "not_matched"),
        ("big-tokens", "not_matched"),
    ]
    assert trace[1]["failed"] == "llm.max_tokens > 4000"
    assert trace[1]["error"] is None


async def test_unary_dry_run_is_not_logged(stub: PolicyServiceStub, kit: Any, bundle: Any) -> None:
    await stub.evaluate_policy(kit.eval_request(kit.SQL, request_id="dry", dry_run=True))
    await stub.evaluate_policy(kit.eval_request(kit.SQL, request_id="wet"))
    ids = {r.request_id for r in (await bundle.decisions.history(HistoryQuery(), limit=100)).items}
    assert "wet" in ids
    assert "dry" not in ids


@pytest.mark.parametrize(
    ("request_", "status", "fragment"),
    [
        (EvaluatePolicyRequest(), Status.INVALID_ARGUMENT, "no context"),
        (
            EvaluatePolicyRequest(context_json=b"[1, 2]"),
            Status.INVALID_ARGUMENT,
            "JSON object",
        ),
        (
            EvaluatePolicyRequest(context_json=b"{", context=Struct.from_dict({})),
            Status.INVALID_ARGUMENT,
            "exactly one",
        ),
        (
            EvaluatePolicyRequest(context_json=b"{}", policies=["nope"]),
            Status.NOT_FOUND,
            "'nope'",
        ),
    ],
)
async def test_unary_errors_map_to_status_codes(
    stub: PolicyServiceStub,
    kit: Any,
    request_: EvaluatePolicyRequest,
    status: Status,
    fragment: str,
) -> None:
    with pytest.raises(GRPCError) as caught:
        await stub.evaluate_policy(request_)
    assert caught.value.status is status
    assert fragment in (caught.value.message or "")


async def test_stream_answers_in_order_and_echoes_ids(stub: PolicyServiceStub, kit: Any) -> None:
    contexts = [kit.SQL if i % 3 == 0 else kit.OK for i in range(300)]
    requests = [
        EvaluatePolicyStreamRequest(request=kit.eval_request(c, request_id=f"id-{i}"))
        for i, c in enumerate(contexts)
    ]
    answers = [r.decision async for r in stub.evaluate_policy_stream(requests)]
    assert [a.request_id for a in answers if a] == [f"id-{i}" for i in range(300)]
    assert [a.decision for a in answers if a] == [
        "deny" if i % 3 == 0 else "allow" for i in range(300)
    ]


def _core(context: dict[str, object]) -> EvaluationRequest:
    return EvaluationRequest(context=context, dry_run=True)
