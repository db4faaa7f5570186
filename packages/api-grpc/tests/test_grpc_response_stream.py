"""JudgeResponseStream through the real grpclib server (spec 7.2, docs/grpc.md "The response stream")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import betterproto2
import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from hypothesis import given, strategies as st
from policy_cli.bootstrap import Services
from policy_core.ports import HistoryQuery
from policy_core.services import response_record_id
from policy_grpc._generated.google.protobuf import Struct
from policy_grpc._generated.llm_policy.v1 import (
    PolicyServiceStub,
    ResponseStreamAnswer,
    ResponseStreamClose,
    ResponseStreamMessage,
    ResponseStreamRequest,
)

PATH = "/llm_policy.v1.PolicyService/JudgeResponseStream"
RESPONSE_YAML = (Path(__file__).parents[3] / "examples/policies/response.yaml").read_text()
CAP_YAML = """\
metadata: {id: cap, name: Cap}
rules:
  - id: over
    condition: "budget.spent(user.id, 'day') + llm.estimated_cost > 3"
    action: {decision: deny, reason: over budget}
"""
CONTEXT = {"user": {"id": "u-9", "roles": []}, "llm": {"model": "gpt-4o", "estimated_cost": 2.0}}


@pytest.fixture
async def guarded(bundle: Services) -> Services:
    await bundle.policies.create(RESPONSE_YAML, author="setup")
    await bundle.policies.create(CAP_YAML, author="setup")
    return bundle


def _deltas(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _open(
    request_id: str = "req-1", policies: tuple[str, ...] = ("response-guard",), **kw: Any
) -> ResponseStreamMessage:
    return ResponseStreamMessage(
        request=ResponseStreamRequest(
            request_id=request_id,
            context_json=json.dumps(CONTEXT).encode(),
            policies=list(policies),
            **kw,
        )
    )


async def _judge(
    channel: Channel,
    kit: Any,
    deltas: list[str],
    close: ResponseStreamClose | None = None,
    **kw: Any,
) -> tuple[list[ResponseStreamAnswer], ResponseStreamAnswer | None]:
    """Send the request, each delta (reading its answer), then close; the answers."""
    answers: list[ResponseStreamAnswer] = []
    async with channel.request(
        PATH,
        Cardinality.STREAM_STREAM,
        ResponseStreamMessage,
        ResponseStreamAnswer,
        metadata=kit.ADMIN,
    ) as stream:
        await stream.send_message(_open(**kw))
        for delta in deltas:
            await stream.send_message(ResponseStreamMessage(delta=delta))
            answer = await stream.recv_message()
            assert answer is not None
            answers.append(answer)
            if answer.decision is not None:  # the deny: the call ends
                await stream.end()
                assert await stream.recv_message() is None
                return answers, None
        await stream.send_message(
            ResponseStreamMessage(close=close or ResponseStreamClose()), end=True
        )
        final = await stream.recv_message()
        assert await stream.recv_message() is None
    return answers, final


async def test_a_clean_stream_releases_everything_and_ends_allowed(
    guarded: Services, channel: Channel, kit: Any
) -> None:
    text = "The capital of France is Paris, and it has been for a long while. " * 20
    answers, final = await _judge(channel, kit, _deltas(text))
    assert all(a.decision is None and not a.final for a in answers)
    assert final is not None
    assert final.final
    assert final.decision is not None
    assert final.decision.decision == "allow"
    assert final.decision.request_id == "req-1"
    released = "".join(a.released for a in answers)
    assert released  # released while streaming, not all held to the end
    assert released + final.released == text


async def test_a_redacted_stream_releases_exactly_the_decisions_text(
    guarded: Services, channel: Channel, kit: Any, stub: PolicyServiceStub
) -> None:
    text = "Sure. " * 40 + "Write to jane.doe@example.com or call. " + "Bye now. " * 40
    answers, final = await _judge(channel, kit, _deltas(text), request_id="req-pii")
    assert final is not None
    assert final.decision is not None
    assert final.decision.decision == "warn"
    assert "response-guard/redact-pii-in-answers" in final.decision.matched_rules
    redacted = final.decision.modifications.to_dict()["response.text"]
    assert "jane.doe@example.com" not in redacted
    out = "".join(a.released for a in answers) + final.released
    assert out == redacted
    # The same decision as the unary EvaluateResponse on the whole text.
    from policy_grpc._generated.llm_policy.v1 import EvaluateResponseRequest

    unary = await stub.evaluate_response(
        EvaluateResponseRequest(
            context_json=json.dumps(CONTEXT).encode(),
            response_json=json.dumps({"text": text}).encode(),
            policies=["response-guard"],
            dry_run=True,
        )
    )
    assert unary.decision is not None
    assert unary.decision.modifications.to_dict() == final.decision.modifications.to_dict()
    assert unary.decision.matched_rules == final.decision.matched_rules


async def test_a_denied_stream_is_cut_before_the_offending_span(
    guarded: Services, channel: Channel, kit: Any
) -> None:
    key = "sk-" + "A1b2C3d4" * 4
    text = "Here is how to call the API. " * 30 + f"Use the key {key} in the header. " + "x" * 400
    answers, final = await _judge(channel, kit, _deltas(text), request_id="req-deny")
    assert final is None
    deny = answers[-1].decision
    assert deny is not None
    assert deny.decision == "deny"
    assert not deny.allowed
    assert deny.matched_rules == ["response-guard/no-credentials-in-answers"]
    released = "".join(a.released for a in answers)
    assert key not in released
    assert "sk-" not in released
    assert text.startswith(released)
    assert len(answers) < len(_deltas(text))  # cut before the end of the response
    # The deny is logged, linked to the request's decision (the text so far).
    page = await guarded.decisions.history(HistoryQuery(request_id=response_record_id("req-deny")))
    [record] = page.items
    assert record.decision == "deny"
    assert record.context["response"]["text"].startswith(released)


async def test_close_settles_the_reservation_and_logs_the_linked_decision(
    guarded: Services, channel: Channel, kit: Any, stub: PolicyServiceStub
) -> None:
    from policy_grpc._generated.llm_policy.v1 import EvaluatePolicyRequest

    admitted = await stub.evaluate_policy(
        EvaluatePolicyRequest(
            request_id="req-spend", context_json=json.dumps(CONTEXT).encode(), policies=["cap"]
        )
    )
    assert admitted.decision is not None
    assert admitted.decision.reservation is not None
    held = admitted.decision.reservation.to_dict()
    assert held["amount"] == 2.0
    close = ResponseStreamClose(
        usage=Struct.from_dict({"prompt_tokens": 10, "completion_tokens": 20}),
        finish_reason="stop",
        cost=0.75,
    )
    _answers, final = await _judge(
        channel,
        kit,
        _deltas("Mail jane@example.com for more."),
        close,
        request_id="req-spend",
        reservation=held["id"],
    )
    assert final is not None
    assert final.settlement is not None
    assert final.settlement.reservation == held["id"]
    assert final.settlement.settled is True
    assert final.settlement.cost == 0.75
    # 0.75 settled instead of 2.0 held: another 2.0 fits under 3.
    again = await stub.evaluate_policy(
        EvaluatePolicyRequest(context_json=json.dumps(CONTEXT).encode(), policies=["cap"])
    )
    assert again.decision is not None
    assert again.decision.decision == "allow"
    # Settling twice is refused: the same reservation on a second stream.
    _, twice = await _judge(
        channel, kit, ["ok"], close, request_id="req-spend-2", reservation=held["id"]
    )
    assert twice is not None
    assert twice.settlement is not None
    assert twice.settlement.settled is False
    # The final decision (a warn: PII redacted) is logged, linked to the request's.
    page = await guarded.decisions.history(HistoryQuery(request_id=response_record_id("req-spend")))
    [record] = page.items
    assert record.decision == "warn"
    assert record.context["response"]["finish_reason"] == "stop"
    assert "jane@example.com" not in json.dumps(record.context)


async def _drive(channel: Channel, kit: Any, messages: list[ResponseStreamMessage]) -> None:
    async with channel.request(
        PATH,
        Cardinality.STREAM_STREAM,
        ResponseStreamMessage,
        ResponseStreamAnswer,
        metadata=kit.ADMIN,
    ) as stream:
        await stream.send_request()
        for message in messages:
            await stream.send_message(message)
        await stream.end()
        while await stream.recv_message() is not None:
            pass


async def _protocol_error(
    channel: Channel, kit: Any, messages: list[ResponseStreamMessage]
) -> GRPCError:
    """The error the call ends with (raised on reading, or with the trailers)."""
    with pytest.raises(GRPCError) as caught:
        await _drive(channel, kit, messages)
    return caught.value


async def test_protocol_errors_are_invalid_argument(
    guarded: Services, channel: Channel, kit: Any
) -> None:
    cases = {
        "a delta before the request": [ResponseStreamMessage(delta="hi")],
        "a close before the request": [ResponseStreamMessage(close=ResponseStreamClose())],
        "a second request": [_open(), _open()],
        "no close": [_open(), ResponseStreamMessage(delta="hi")],
        "an empty message": [ResponseStreamMessage()],
        "no request at all": [],
    }
    for name, messages in cases.items():
        error = await _protocol_error(channel, kit, messages)
        assert error.status is Status.INVALID_ARGUMENT, name
    bad = ResponseStreamMessage(request=ResponseStreamRequest(context_json=b"{nope"))
    assert (await _protocol_error(channel, kit, [bad])).status is Status.INVALID_ARGUMENT
    unknown = _open(policies=("no-such-policy",))
    assert (await _protocol_error(channel, kit, [unknown])).status is Status.NOT_FOUND


async def test_the_stream_needs_the_evaluate_permission(
    guarded: Services, channel: Channel, kit: Any
) -> None:
    async with channel.request(
        PATH,
        Cardinality.STREAM_STREAM,
        ResponseStreamMessage,
        ResponseStreamAnswer,
        metadata={},
    ) as stream:
        await stream.send_message(_open(), end=True)
        with pytest.raises(GRPCError) as caught:
            await stream.recv_message()
    assert caught.value.status is Status.UNAUTHENTICATED


@given(st.one_of(st.text(), st.binary()))
def test_the_delta_fast_path_decodes_as_the_generated_code(value: str | bytes) -> None:
    from policy_grpc._response_stream import _decode
    from policy_grpc._status import InvalidRequestError

    if isinstance(value, str):
        data = bytes(ResponseStreamMessage(delta=value))
        assert _decode(data) == ("delta", value)
        return
    try:
        expected: object = betterproto2.which_one_of(
            ResponseStreamMessage.FromString(value), "kind"
        )
    except Exception:
        expected = None
    try:
        got: object = _decode(value)
    except InvalidRequestError:
        got = None
    if expected is not None and expected[0]:  # type: ignore[index]
        assert got == expected
    else:
        assert got is None


def test_a_message_repeating_the_oneof_is_invalid_not_internal() -> None:
    from policy_grpc._response_stream import _decode
    from policy_grpc._status import InvalidRequestError

    both = bytes(ResponseStreamMessage(delta="x")) + bytes(_open())
    with pytest.raises(InvalidRequestError):
        _decode(both)
