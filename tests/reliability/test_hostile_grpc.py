"""Hostile gRPC input (issue 13): oversized and truncated frames, garbage and deep JSON
contexts each get a clear status naming the limit; the server keeps answering."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from policy_cli.bootstrap import bootstrap
from policy_cli.testing import grpc_server, memory_settings
from policy_grpc import GrpcServer
from policy_grpc._transport import RawMessage
from policy_http.testing import TEST_SECRET, make_token

pytestmark = pytest.mark.reliability

SETTINGS = memory_settings(jwt_secret=TEST_SECRET, jwt_issuer=None, jwt_audience=None)


def admin() -> dict[str, str]:
    """Minted per request: a token made at import expired when the suite ran past its 300 s."""
    return {
        "authorization": "Bearer " + make_token(roles=["admin"], claims={"iss": None, "aud": None})
    }


EVALUATE = "/llm_policy.v1.PolicyService/EvaluatePolicy"


@pytest.fixture
async def server() -> AsyncIterator[GrpcServer]:
    async with bootstrap(SETTINGS) as services:
        srv = grpc_server(services, SETTINGS, drain_seconds=2.0)
        await srv.start("127.0.0.1", 0)
        yield srv
        await srv.drain()


@pytest.fixture
async def channel(server: GrpcServer) -> AsyncIterator[Channel]:
    ch = Channel("127.0.0.1", server.port)
    yield ch
    ch.close()


async def _send(channel: Channel, body: bytes) -> RawMessage | None:
    async with channel.request(
        EVALUATE, Cardinality.UNARY_UNARY, RawMessage, RawMessage, metadata=admin()
    ) as stream:
        await stream.send_message(RawMessage(body), end=True)
        return await stream.recv_message()


async def _error(channel: Channel, body: bytes) -> GRPCError:
    with pytest.raises(GRPCError) as raised:
        await _send(channel, body)
    return raised.value


def _context(json_bytes: bytes) -> bytes:
    """An EvaluatePolicyRequest whose field 7 (context_json) holds these bytes."""
    return b"\x3a" + _varint(len(json_bytes)) + json_bytes


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


async def _still_up(channel: Channel) -> None:
    reply = await _send(channel, _context(b'{"llm": {}}'))
    assert reply is not None


async def test_an_oversized_message_is_resource_exhausted(channel: Channel) -> None:
    error = await _error(channel, _context(b'{"a": "' + b"x" * (5 * 1024 * 1024) + b'"}'))
    assert error.status is Status.RESOURCE_EXHAUSTED
    assert error.message is not None
    assert "bytes" in error.message
    await _still_up(channel)


async def test_a_truncated_frame_is_answered_and_the_server_stays_up(channel: Channel) -> None:
    """A gRPC frame whose length prefix promises more bytes than the stream carries."""
    status: Status | None = None
    try:
        async with channel.request(
            EVALUATE, Cardinality.UNARY_UNARY, RawMessage, RawMessage, metadata=admin()
        ) as stream:
            await stream.send_request()
            await stream._stream.send_data(b"\x00\x00\x00\x01\x00abc", end_stream=True)
            await stream.recv_message()
    except GRPCError as exc:
        status = exc.status
    except StreamTerminatedError:
        status = Status.CANCELLED  # the server reset the stream: also a clear refusal
    assert status in (Status.INVALID_ARGUMENT, Status.INTERNAL, Status.CANCELLED), status
    assert status is not Status.UNKNOWN
    await _still_up(channel)


@pytest.mark.parametrize(
    ("json_bytes", "fragment"),
    [
        (b'{"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "deeper than"),
        (b'{"a": "\xff"}', "UTF-8"),
        (b'{"a": NaN}', ""),
        (b'{"a": 1e1000}', ""),
        (b"[1, 2]", ""),
    ],
)
async def test_hostile_contexts_are_invalid_argument(
    channel: Channel, json_bytes: bytes, fragment: str
) -> None:
    error = await _error(channel, _context(json_bytes))
    assert error.status in (Status.INVALID_ARGUMENT, Status.RESOURCE_EXHAUSTED), error
    assert fragment in (error.message or ""), error.message
    await _still_up(channel)
