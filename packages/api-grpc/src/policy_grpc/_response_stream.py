"""JudgeResponseStream: a streamed model response judged delta by delta (spec 7.2).

Contract (docs/grpc.md, "The response stream"):
- the first message is `request` (the request's context and id, the policy
  filter, the reservation); a `delta` or `close` before it, or a second
  `request`, is INVALID_ARGUMENT;
- each `delta` is answered by one ResponseStreamAnswer: `released`, the text
  that may be passed on now (possibly empty); once a rule denies, the answer
  carries the deny `decision` and the call ends (status OK): nothing of the
  offending span was released; the deny is logged as `<request_id>.response`
  (the text so far, no usage: nothing is settled);
- `close` (usage, finish_reason, tool_calls) is answered by the final answer
  (`final`): the decision of `evaluate_response` on the whole text, the rest
  of the text that decision passes on, and the settlement of the
  reservation; the decision is logged as `<request_id>.response`, like
  EvaluateResponse's. The call then ends (messages after `close` are not
  read); a half-close without `close` is INVALID_ARGUMENT.

Fast path: `_decode` reads a message that is one `delta` and nothing else by
hand; it is the fast copy of betterproto2's `ResponseStreamMessage.FromString`,
which decodes every other message and says what is wrong with a bad one.
Parity: test_grpc_response_stream.py::test_the_delta_fast_path_decodes_as_the_generated_code
and ::test_a_message_repeating_the_oneof_is_invalid_not_internal.
"""

from __future__ import annotations

import os
from typing import Any

import betterproto2
from policy_core.model import Decision
from policy_core.services import (
    EvaluationService,
    ResponseEvaluationRequest,
    ServiceResponseStream,
    Settlement,
)

from policy_grpc._evaluation import _json_object
from policy_grpc._generated.llm_policy.v1 import (
    ResponseStreamMessage,
    ResponseStreamRequest,
    Settlement as SettlementMessage,
)
from policy_grpc._protobuf import WireError, encode_varint, varint
from policy_grpc._status import InvalidRequestError
from policy_grpc._transport import FrameReader, FrameWriter
from policy_grpc._wire import encode_decision

__all__ = ["ResponseStreamCall"]

_EMPTY = b""  # an answer releasing nothing: every field at its default


def _released(text: str) -> bytes:
    if not text:
        return _EMPTY
    data = text.encode("utf-8", "surrogatepass")
    return b"\x0a" + encode_varint(len(data)) + data


def _answer(
    text: str,
    decision: Decision | None,
    request_id: str,
    *,
    final: bool = False,
    settlement: Settlement | None = None,
) -> bytes:
    out = _released(text)
    if decision is not None:
        body = encode_decision(decision, request_id)
        out += b"\x12" + encode_varint(len(body)) + body
    if final:
        out += b"\x18\x01"
    if settlement is not None:
        body = bytes(
            SettlementMessage(
                reservation=settlement.reservation,
                settled=settlement.settled,
                cost=settlement.cost or 0.0,
            )
        )
        out += b"\x22" + encode_varint(len(body)) + body
    return out


def _decode(data: bytes) -> tuple[str, Any]:
    # The fast path: a message that is one `delta` (tag 2, length-delimited) and nothing else.
    if data[:1] == b"\x12":
        try:
            size, pos = varint(data, 1)
            if pos + size == len(data):
                return "delta", data[pos:].decode("utf-8")
        except (WireError, IndexError, UnicodeDecodeError):
            pass  # the generated decoder says what is wrong
    try:
        message = ResponseStreamMessage.FromString(data)
        # Raises too: betterproto2 keeps every member of a oneof the wire repeats.
        name, value = betterproto2.which_one_of(message, "kind")
    except Exception as exc:
        raise InvalidRequestError(f"malformed ResponseStreamMessage: {exc}") from None
    if not name or value is None:
        raise InvalidRequestError("a ResponseStreamMessage must set `request`, `delta` or `close`")
    return name, value


def _core_request(wire: ResponseStreamRequest) -> ResponseEvaluationRequest:
    response: dict[str, Any] = {}
    if wire.model:
        response["model"] = wire.model
    return ResponseEvaluationRequest(
        context=_json_object(wire.context_json, "context_json"),
        response=response,
        policies=list(wire.policies) or None,
        namespace=wire.namespace or None,
        dry_run=wire.dry_run,
        request_id=wire.request_id or os.urandom(16).hex(),
        reservation=wire.reservation or None,
    )


class ResponseStreamCall:
    """Runs one JudgeResponseStream call (see the module doc)."""

    def __init__(
        self, evaluation: EvaluationService, reader: FrameReader, writer: FrameWriter
    ) -> None:
        self._evaluation = evaluation
        self._reader = reader
        self._writer = writer

    async def run(self) -> None:
        data = await self._reader.read()
        if data is None:
            raise InvalidRequestError("the call carries no request message")
        kind, value = _decode(data)
        if kind != "request":
            raise InvalidRequestError(f"the first message must be `request`, not `{kind}`")
        request = _core_request(value)
        request_id = request.request_id or ""
        judge = await self._evaluation.response_stream(request)
        writer = self._writer
        await writer.start()
        while True:
            data = await self._reader.read()
            if data is None:
                raise InvalidRequestError("the stream ended without `close`")
            kind, value = _decode(data)
            if kind == "delta":
                chunk = judge.feed(value)
                if chunk.decision is not None:  # a deny: answered, and the call ends
                    writer.add(_answer(chunk.text, chunk.decision, request_id))
                    await writer.flush()
                    # Logged (and linked) as a close without usage would be: the text so far.
                    await judge.close()
                    return
                writer.add(_released(chunk.text))
                await writer.flush()
            elif kind == "close":
                await self._close(judge, value)
                return
            else:
                raise InvalidRequestError("`request` was already sent; send deltas, then `close`")

    async def _close(self, judge: ServiceResponseStream, close: Any) -> None:
        usage = close.usage.to_dict() if close.usage is not None else None
        tool_calls = close.tool_calls.to_dict() if close.tool_calls is not None else None
        chunk, result, settlement = await judge.close(
            usage,
            finish_reason=close.finish_reason or None,
            tool_calls=tool_calls,
            model=close.model or None,
            cost=close.cost,
        )
        self._writer.add(
            _answer(
                chunk.text, chunk.decision, result.request_id, final=True, settlement=settlement
            )
        )
        await self._writer.flush()
