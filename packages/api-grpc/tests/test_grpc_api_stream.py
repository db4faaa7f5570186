"""The streaming contract: order, errors as decisions, back-pressure, cancellation, drain."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpclib.client import Channel, Stream
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest
from policy_core.auth import CredentialAuthenticator
from policy_core.services import EvaluationRequest, EvaluationResult
from policy_grpc import GrpcServer, GrpcSettings, create_grpc_server
from policy_grpc._generated.llm_policy.v1 import (
    EvaluatePolicyRequest,
    EvaluatePolicyStreamRequest,
    EvaluatePolicyStreamResponse,
    PolicyServiceStub,
)

PATH = "/llm_policy.v1.PolicyService/EvaluatePolicyStream"


def _message(request_id: str, context: Any = None, **kw: Any) -> EvaluatePolicyStreamRequest:
    body = json.dumps(context if context is not None else {"user": {"id": "u"}}).encode()
    return EvaluatePolicyStreamRequest(
        request=EvaluatePolicyRequest(request_id=request_id, context_json=body, **kw)
    )


async def test_one_bad_request_gets_an_error_decision_and_the_stream_goes_on(
    stub: PolicyServiceStub, kit: Any
) -> None:
    requests = [
        _message("a", kit.SQL),
        EvaluatePolicyStreamRequest(request=EvaluatePolicyRequest(request_id="b")),
        _message("c", kit.OK, policies=["no-such-policy"]),
        EvaluatePolicyStreamRequest(
            request=EvaluatePolicyRequest(request_id="d", context_json=b"{not json")
        ),
        EvaluatePolicyStreamRequest(),
        _message("f", kit.OK),
    ]
    answers = [r.decision async for r in stub.evaluate_policy_stream(requests)]
    assert all(a is not None for a in answers)
    got = [(a.request_id, a.decision, a.allowed) for a in answers if a]
    assert [g[1:] for g in got] == [("deny", False)] * 5 + [("allow", True)]
    assert [g[0] for g in got][:4] == ["a", "b", "c", "d"]
    assert got[4][0]  # a request without an id gets a generated one
    errors = {a.request_id: a.metadata.to_dict()["error"] for a in answers[1:5] if a and a.metadata}
    assert errors["b"] == {"code": "invalid_argument", "status": "INVALID_ARGUMENT"}
    assert errors["c"] == {"code": "policy_not_found", "status": "NOT_FOUND"}
    assert answers[2] is not None
    assert answers[2].errors[0].to_dict()["message"].startswith("policy 'no-such-policy'")
    assert answers[2].reason is not None
    assert answers[2].reason.startswith("request failed: ")


class _Gated:
    """An evaluation service whose evaluations wait for a gate: shows what the server reads."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[str] = []
        self.cancelled: list[str] = []

    async def evaluate(self, request: EvaluationRequest) -> EvaluationResult:
        from policy_core.model import Decision

        self.started.append(request.request_id or "")
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(request.request_id or "")
            raise
        return EvaluationResult(
            decision=Decision(decision="allow", allowed=True), request_id=request.request_id or ""
        )


class _GatedBundle:
    def __init__(self, policies: Any, evaluation: _Gated) -> None:
        self.policies, self.evaluation = policies, evaluation
        self.authenticator = CredentialAuthenticator(anonymous=True)  # no credentials needed


@pytest.fixture
async def gated(bundle: Any) -> AsyncIterator[tuple[_Gated, GrpcServer, Channel]]:
    evaluation = _Gated()
    settings = GrpcSettings(stream_max_in_flight=4, drain_seconds=5)
    server = create_grpc_server(_GatedBundle(bundle.policies, evaluation), settings)
    await server.start("127.0.0.1", 0)
    channel = Channel("127.0.0.1", server.port)
    yield evaluation, server, channel
    channel.close()
    await server.drain()


async def _open(channel: Channel) -> Any:
    return channel.request(
        PATH, Cardinality.STREAM_STREAM, EvaluatePolicyStreamRequest, EvaluatePolicyStreamResponse
    )


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def _send_all(stream: Stream[Any, Any], n: int) -> None:
    for i in range(n):
        await stream.send_message(_message(f"m{i}"))


async def test_back_pressure_bounds_the_requests_in_flight(gated: Any) -> None:
    evaluation, _, channel = gated
    async with await _open(channel) as stream:
        await stream.send_request()
        sender = asyncio.create_task(_send_all(stream, 40))
        await _until(lambda: len(evaluation.started) == 4)
        await asyncio.sleep(0.2)  # more would have started by now if the server kept reading
        assert evaluation.started == ["m0", "m1", "m2", "m3"]
        evaluation.gate.set()
        await sender
        await stream.end()
        answers = [m.decision.request_id async for m in stream if m.decision]
    assert answers == [f"m{i}" for i in range(40)]


async def test_cancelling_the_call_cancels_its_evaluations(gated: Any) -> None:
    evaluation, server, channel = gated
    async with await _open(channel) as stream:
        await stream.send_request()
        await _send_all(stream, 3)
        await _until(lambda: len(evaluation.started) == 3)
        await stream.cancel()
    await _until(lambda: len(evaluation.cancelled) == 3)
    await _until(lambda: server.calls.active == 0)
    assert sorted(evaluation.cancelled) == ["m0", "m1", "m2"]


async def test_drain_answers_accepted_requests_then_ends_the_stream(gated: Any) -> None:
    evaluation, server, channel = gated
    health = HealthStub(channel)
    check = HealthCheckRequest(service="llm_policy.v1.PolicyService")
    assert (await health.Check(check)).status == HealthCheckResponse.SERVING
    overall = HealthCheckRequest(service="")
    assert (await health.Check(overall)).status == HealthCheckResponse.SERVING
    answers: list[str] = []
    ending: BaseException | None = None
    try:
        async with await _open(channel) as stream:
            await stream.send_request()
            await _send_all(stream, 2)
            await _until(lambda: len(evaluation.started) == 2)
            draining = asyncio.create_task(server.drain())
            await _until(server.calls.draining.is_set)
            assert (await health.Check(check)).status == HealthCheckResponse.NOT_SERVING
            assert (await health.Check(overall)).status == HealthCheckResponse.NOT_SERVING
            refused = await _refusal(PolicyServiceStub(channel))
            assert refused.status is Status.UNAVAILABLE
            evaluation.gate.set()
            async for message in stream:
                answers.append(message.decision.request_id if message.decision else "")
    except (GRPCError, StreamTerminatedError) as exc:
        # The server ends the call with UNAVAILABLE; as the client had not
        # half-closed, grpclib also resets the stream, which may be seen first.
        ending = exc
    await draining
    assert answers == ["m0", "m1"]
    assert isinstance(ending, StreamTerminatedError) or (
        isinstance(ending, GRPCError) and ending.status is Status.UNAVAILABLE
    )


async def _refusal(stub: PolicyServiceStub) -> GRPCError:
    try:
        await stub.evaluate_policy(EvaluatePolicyRequest())
    except GRPCError as exc:
        return exc
    raise AssertionError("a call during the drain was accepted")


async def test_an_oversized_message_is_resource_exhausted(bundle: Any) -> None:
    settings = GrpcSettings(max_message_bytes=1024)
    open_bundle = dataclasses.replace(bundle, authenticator=CredentialAuthenticator(anonymous=True))
    server = create_grpc_server(open_bundle, settings)
    await server.start("127.0.0.1", 0)
    channel = Channel("127.0.0.1", server.port)
    try:
        big = {"llm": {"prompt": "x" * 4096}}
        stub = PolicyServiceStub(channel)
        with pytest.raises(GRPCError) as unary:
            await stub.evaluate_policy(EvaluatePolicyRequest(context_json=json.dumps(big).encode()))
        assert unary.value.status is Status.RESOURCE_EXHAUSTED
        with pytest.raises(GRPCError) as streamed:
            async for _ in stub.evaluate_policy_stream([_message("ok"), _message("big", big)]):
                pass
        assert streamed.value.status is Status.RESOURCE_EXHAUSTED
        assert "exceeds the limit of 1024 bytes" in (streamed.value.message or "")
    finally:
        channel.close()
        await server.drain()


async def test_reflection_lists_and_describes_the_services(channel: Channel) -> None:
    reflection = ServerReflectionStub(channel)
    async with reflection.ServerReflectionInfo.open() as stream:
        await stream.send_message(ServerReflectionRequest(list_services=""))
        listed = await stream.recv_message()
        await stream.send_message(
            ServerReflectionRequest(file_containing_symbol="llm_policy.v1.PolicyService")
        )
        described = await stream.recv_message()
        await stream.end()
    assert listed is not None
    assert described is not None
    names = {s.name for s in listed.list_services_response.service}
    assert {"llm_policy.v1.PolicyService", "grpc.health.v1.Health"} <= names
    files = described.file_descriptor_response.file_descriptor_proto
    assert files
    assert b"EvaluatePolicyStream" in files[0]
