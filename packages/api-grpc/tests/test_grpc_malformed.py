"""Malformed requests to every service get a mapped status and no stack trace (issue 13).

Regression: a malformed gRPC health request answered UNKNOWN "Internal Server
Error" and wrote a stack trace to the log; docs/grpc.md promises mapped
statuses and no stack traces.
"""

from __future__ import annotations

import logging

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from policy_grpc import GrpcServer
from policy_grpc._transport import RawMessage

from .conftest import ADMIN

GARBAGE = [
    b"\xff\xff\xff",  # an invalid tag
    b"\x0a\x10abc",  # a string field that claims more bytes than follow (truncated)
    b"\x0a\x80",  # a length varint cut short
    b"\x0b",  # a start-group with no end
]


async def _send(channel: Channel, name: str, body: bytes) -> RawMessage | None:
    async with channel.request(
        name, Cardinality.UNARY_UNARY, RawMessage, RawMessage, metadata=ADMIN
    ) as stream:
        await stream.send_message(RawMessage(body), end=True)
        return await stream.recv_message()


async def _unary(channel: Channel, name: str, body: bytes) -> GRPCError:
    with pytest.raises(GRPCError) as raised:
        await _send(channel, name, body)
    return raised.value


@pytest.mark.parametrize("body", GARBAGE)
async def test_a_malformed_health_check_is_invalid_argument_without_a_stack_trace(
    server: GrpcServer, channel: Channel, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    caplog.set_level(logging.INFO)
    error = await _unary(channel, "/grpc.health.v1.Health/Check", body)
    assert error.status is Status.INVALID_ARGUMENT
    assert error.message == "the request is not a valid HealthCheckRequest message"
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    # The server still answers.
    ok = await _unary_ok(channel)
    assert ok


async def _unary_ok(channel: Channel) -> bytes:
    async with channel.request(
        "/grpc.health.v1.Health/Check", Cardinality.UNARY_UNARY, RawMessage, RawMessage
    ) as stream:
        await stream.send_message(RawMessage(b""), end=True)
        reply = await stream.recv_message()
    assert reply is not None
    return reply.data or b"\x08\x01"


@pytest.mark.parametrize("body", GARBAGE)
async def test_malformed_policy_requests_get_a_mapped_status_without_a_stack_trace(
    server: GrpcServer, channel: Channel, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    """protobuf decoders skip what they can: garbage is INVALID_ARGUMENT (or NOT_FOUND
    for an id read out of it), never INTERNAL; ValidatePolicy may answer with issues."""
    caplog.set_level(logging.INFO)
    for method in ("EvaluatePolicy", "CreatePolicy", "GetPolicy", "UpdatePolicy"):
        error = await _unary(channel, f"/llm_policy.v1.PolicyService/{method}", body)
        assert error.status in (Status.INVALID_ARGUMENT, Status.NOT_FOUND), (method, error)
    status = Status.OK
    try:
        await _send(channel, "/llm_policy.v1.PolicyService/ValidatePolicy", body)
    except GRPCError as exc:
        status = exc.status
    assert status in (Status.OK, Status.INVALID_ARGUMENT)
    assert not [r for r in caplog.records if r.exc_info]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_unexpected_error_is_internal_logged_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from policy_grpc._mapped import mapped_handlers

    class Boom:
        def __mapping__(self) -> dict[str, object]:
            from grpclib.const import Handler

            async def func(stream: object) -> None:
                raise RuntimeError("the disk is on fire")

            return {"/x.Y/Z": Handler(func, Cardinality.UNARY_UNARY, RawMessage, RawMessage)}

    (wrapped,) = mapped_handlers([Boom()])
    caplog.set_level(logging.INFO)
    with pytest.raises(GRPCError) as raised:
        await wrapped.__mapping__()["/x.Y/Z"].func(object())
    assert raised.value.status is Status.INTERNAL
    assert raised.value.message == "internal error"
    (record,) = [r for r in caplog.records if r.name == "policy_grpc"]
    assert record.exc_info is None
    assert "RuntimeError: the disk is on fire" in record.getMessage()
