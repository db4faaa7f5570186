"""Evaluations over gRPC: request mapping, error decisions, and the streaming pipeline.

Streaming contract (docs/grpc.md):
- answers leave in request order, each echoing its request's `request_id`
  (generated when the request had none);
- at most `max_in_flight` requests of a stream are being evaluated or
  waiting to be written; beyond that the stream is not read, and HTTP/2 flow
  control holds the client back (no unbounded buffering);
- a request that fails (malformed, unknown policy id, internal error) is
  answered by an error decision, spec 5.4: `deny`, the problem in `errors`
  and `metadata.error`, and the stream goes on;
- when the call is cancelled, every evaluation of the stream is cancelled;
- when the server drains, the stream stops reading, answers what it has
  accepted, and ends with UNAVAILABLE: unanswered requests were not
  evaluated and may be sent again on a new stream.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from policy_core.errors import PolicyEngineError
from policy_core.model import Decision, EvaluationError
from policy_core.services import (
    EvaluationRequest,
    EvaluationResult,
    ResponseEvaluationRequest,
)

from policy_grpc._eager import start_eagerly
from policy_grpc._status import InvalidRequestError, grpc_error, status_of
from policy_grpc._transport import FLUSH_BYTES, FrameReader, FrameWriter
from policy_grpc._wire import (
    WireRequest,
    decode_stream_request,
    encode_decision,
    wrap_decision,
)

__all__ = [
    "StreamPipeline",
    "answer",
    "error_answer",
    "to_evaluation_request",
    "to_response_request",
]

Evaluate = Callable[[EvaluationRequest], Awaitable[EvaluationResult]]

_context_decoder = msgspec.json.Decoder(dict[str, Any])
# msgspec gives up (cleanly, RecursionError) this deep at the least.
MAX_DECODE_DEPTH = 500


def to_evaluation_request(wire: WireRequest) -> EvaluationRequest:
    """The core request for a decoded message; InvalidRequestError when it is malformed."""
    if wire.error is not None:
        raise InvalidRequestError(f"malformed EvaluatePolicyRequest: {wire.error}")
    if wire.context_json:
        if wire.has_context:
            raise InvalidRequestError("set exactly one of `context` and `context_json`, not both")
        context = _decode_object(wire.context_json, "context_json")
    elif wire.context is not None:
        context = wire.context
    else:
        raise InvalidRequestError("the request has no context: set `context` or `context_json`")
    return EvaluationRequest(
        context=context,
        # As given: the engine's `select` normalises the filter (empty = not given).
        policies=wire.policies,
        namespace=wire.namespace,
        dry_run=wire.dry_run,
        trace=wire.trace,
        request_id=wire.request_id or None,
    )


def _json_object(raw: bytes, field: str) -> dict[str, Any]:
    if not raw:
        raise InvalidRequestError(f"the request has no `{field}`")
    return _decode_object(raw, field)


def _decode_object(raw: bytes, field: str) -> dict[str, Any]:
    """A JSON object field; hostile input (deep nesting, invalid UTF-8) is
    INVALID_ARGUMENT naming the problem, never INTERNAL (issue 13)."""
    try:
        return _context_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"`{field}` must be a JSON object: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(
            f"`{field}` is not valid UTF-8 (byte {exc.start}); JSON text must be UTF-8"
        ) from None
    except RecursionError:
        raise InvalidRequestError(
            f"`{field}` nests deeper than {MAX_DECODE_DEPTH} levels "
            "(a context may nest at most LLM_POLICY_MAX_CONTEXT_DEPTH levels)"
        ) from None


def to_response_request(wire: Any) -> ResponseEvaluationRequest:
    """The core request for an EvaluateResponseRequest; InvalidRequestError when malformed."""
    return ResponseEvaluationRequest(
        context=_json_object(wire.context_json, "context_json"),
        response=_json_object(wire.response_json, "response_json"),
        policies=list(wire.policies) or None,
        namespace=wire.namespace or None,
        dry_run=wire.dry_run,
        trace=wire.trace,
        request_id=wire.request_id or None,
        reservation=wire.reservation or None,
    )


def error_decision(exc: BaseException) -> Decision:
    """The decision answering a request that could not be evaluated (never an allow)."""
    status = status_of(exc)
    message = grpc_error(exc).message or "internal error"
    code = exc.code if isinstance(exc, PolicyEngineError) else status.name.lower()
    return Decision(
        decision="deny",
        allowed=False,
        reason=f"request failed: {message}",
        errors=(EvaluationError(policy="", rule="", message=message),),
        metadata={"error": {"code": code, "status": status.name}},
    )


def error_answer(request_id: str, exc: BaseException) -> bytes:
    """A serialised stream response holding the error decision of one request."""
    decision = error_decision(exc)
    return wrap_decision(encode_decision(decision, request_id or uuid.uuid4().hex))


def answer(result: EvaluationResult) -> bytes:
    """A serialised EvaluatePolicyResponse / EvaluatePolicyStreamResponse."""
    return wrap_decision(encode_decision(result.decision, result.request_id, cached=result.cached))


class StreamPipeline:
    """Runs one EvaluatePolicyStream call: read, evaluate concurrently, answer in order."""

    def __init__(
        self,
        evaluate: Evaluate,
        reader: FrameReader,
        writer: FrameWriter,
        *,
        max_in_flight: int,
        draining: asyncio.Event,
    ) -> None:
        self._evaluate = evaluate
        self._reader = reader
        self._writer = writer
        self._slots = asyncio.Semaphore(max_in_flight)
        # An answer ready at once is queued as bytes, else as the future of its task.
        self._queue: deque[bytes | asyncio.Future[bytes]] = deque()
        self._added = asyncio.Event()
        self._done_reading = False
        self._draining = draining
        self._loop = asyncio.get_running_loop()

    async def run(self) -> None:
        """Serve the stream until the client half-closes (or the server drains)."""
        await self._writer.start()
        reading = self._loop.create_task(self._read())
        watching = self._loop.create_task(self._watch_drain(reading))
        try:
            await self._write()
            await asyncio.wait((reading,))
            if not reading.cancelled():
                reading.result()  # a reading failure (oversized message...) ends the call
        finally:
            watching.cancel()
            reading.cancel()
            for pending in self._queue:
                if isinstance(pending, asyncio.Future):
                    pending.cancel()
        if self._draining.is_set():
            raise GRPCError(
                Status.UNAVAILABLE,
                "the server is shutting down: requests without an answer were not "
                "evaluated; send them again on a new stream",
            )

    async def _watch_drain(self, reading: asyncio.Task[None]) -> None:
        await self._draining.wait()
        reading.cancel()

    async def _read(self) -> None:
        try:
            while True:
                # Take the slot before reading, so a full stream is not read at all.
                await self._slots.acquire()
                data = await self._reader.read()
                if data is None:
                    break
                self._queue.append(self._start(data))
                self._added.set()
        finally:
            self._done_reading = True
            self._added.set()

    def _start(self, data: bytes) -> bytes | asyncio.Future[bytes]:
        wire = decode_stream_request(data)
        try:
            request = to_evaluation_request(wire)
        except InvalidRequestError as exc:
            return error_answer(wire.request_id, exc)
        return start_eagerly(self._answer(request), self._loop)[1]

    async def _answer(self, request: EvaluationRequest) -> bytes:
        try:
            return answer(await self._evaluate(request))
        except Exception as exc:  # one request's failure answers that request only
            return error_answer(request.request_id or "", exc)

    async def _write(self) -> None:
        writer, queue = self._writer, self._queue
        while True:
            if not queue:
                if self._done_reading:
                    break
                # Nothing ready: send what is gathered before waiting for more. Clear
                # first: the reader may add (and set) while the flush waits.
                self._added.clear()
                await writer.flush()
                if not queue and not self._done_reading:
                    await self._added.wait()
                continue
            head = queue[0]
            if isinstance(head, asyncio.Future):
                if not head.done():
                    await writer.flush()
                    await asyncio.wait((head,))
                head = head.result()
            queue.popleft()
            self._slots.release()
            writer.add(head)
            if writer.pending_bytes >= FLUSH_BYTES:
                await writer.flush()
        await writer.flush()
