"""The `llm_policy.v1.PolicyService` handlers, over the core services.

The handler table is written here rather than inherited from the generated
`PolicyServiceBase`: its methods receive only the message, while every call
here needs the stream too (metadata for auth, bounded reads, batched writes).
The evaluation messages skip the generated classes: _wire.py is their
hand-written fast copy (and _transport.py that of grpclib's message I/O).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import betterproto2
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream
from policy_core.errors import PolicyLoadError
from policy_core.ports import Authenticator, Principal
from policy_core.services import EvaluationService, PolicyService

from policy_grpc import _convert as convert
from policy_grpc._evaluation import (
    StreamPipeline,
    answer,
    to_evaluation_request,
    to_response_request,
)
from policy_grpc._generated.llm_policy.v1 import (
    CreatePolicyRequest,
    CreatePolicyResponse,
    DeletePolicyRequest,
    DeletePolicyResponse,
    EvaluateResponseRequest,
    GetPolicyRequest,
    GetPolicyResponse,
    ListPoliciesRequest,
    ListPoliciesResponse,
    UpdatePolicyRequest,
    UpdatePolicyResponse,
    ValidatePolicyRequest,
    ValidatePolicyResponse,
)
from policy_grpc._response_stream import ResponseStreamCall
from policy_grpc._status import InvalidRequestError, PermissionDeniedError, grpc_error
from policy_grpc._transport import FrameReader, FrameWriter, RawMessage
from policy_grpc._wire import decode_request
from policy_grpc.settings import GrpcSettings

__all__ = ["SERVICE_NAME", "CallTracker", "GrpcServices", "PolicyGrpcService"]

SERVICE_NAME = "llm_policy.v1.PolicyService"

Req = TypeVar("Req", bound=betterproto2.Message)


class GrpcServices(Protocol):
    """What the gRPC API needs from the composition root: services, never adapters."""

    @property
    def policies(self) -> PolicyService: ...

    @property
    def evaluation(self) -> EvaluationService: ...

    @property
    def authenticator(self) -> Authenticator:
        """Verifies bearer tokens and API keys (built by the composition root)."""
        ...


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class CallTracker:
    """Counts running calls and carries the drain signal of a graceful shutdown."""

    def __init__(self) -> None:
        self.draining = asyncio.Event()
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def active(self) -> int:
        return self._active

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        if self.draining.is_set():
            raise GRPCError(Status.UNAVAILABLE, "the server is shutting down; retry elsewhere")
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class PolicyGrpcService:
    """grpclib servable for `llm_policy.v1.PolicyService`."""

    def __init__(
        self,
        services: GrpcServices,
        settings: GrpcSettings,
        calls: CallTracker,
    ) -> None:
        self._policies = services.policies
        self._evaluation = services.evaluation
        self._settings = settings
        self._auth = services.authenticator
        self._calls = calls

    def __mapping__(self) -> dict[str, Handler]:
        unary, stream = Cardinality.UNARY_UNARY, Cardinality.STREAM_STREAM
        prefix = f"/{SERVICE_NAME}/"
        table: dict[str, Handler] = {
            "EvaluatePolicy": Handler(self._evaluate, unary, RawMessage, RawMessage),
            "EvaluatePolicyStream": Handler(self._evaluate_stream, stream, RawMessage, RawMessage),
            "EvaluateResponse": Handler(self._evaluate_response, unary, RawMessage, RawMessage),
            "JudgeResponseStream": Handler(
                self._judge_response_stream, stream, RawMessage, RawMessage
            ),
            "CreatePolicy": self._admin(
                "policies:write", CreatePolicyRequest, CreatePolicyResponse, self._create
            ),
            "GetPolicy": self._admin(
                "policies:read", GetPolicyRequest, GetPolicyResponse, self._get
            ),
            "UpdatePolicy": self._admin(
                "policies:write", UpdatePolicyRequest, UpdatePolicyResponse, self._update
            ),
            "DeletePolicy": self._admin(
                "policies:delete", DeletePolicyRequest, DeletePolicyResponse, self._delete
            ),
            "ListPolicies": self._admin(
                "policies:read", ListPoliciesRequest, ListPoliciesResponse, self._list
            ),
            "ValidatePolicy": self._admin(
                "policies:read", ValidatePolicyRequest, ValidatePolicyResponse, self._validate
            ),
        }
        return {prefix + name: handler for name, handler in table.items()}

    # --- plumbing -------------------------------------------------------------

    async def _authorize(self, stream: Stream[Any, Any], permission: str) -> Principal:
        # The transport part only: the core's authenticator does the rest.
        metadata: Mapping[str, Any] = stream.metadata or {}
        principal = await self._auth.authenticate(
            _text(metadata.get("authorization")), _text(metadata.get("x-api-key"))
        )
        if permission not in principal.permissions:
            raise PermissionDeniedError(f"{principal.id!r} lacks the {permission!r} permission")
        return principal

    async def _read_one(self, stream: Stream[Any, Any]) -> bytes:
        data = await FrameReader(stream, self._settings.max_message_bytes).read()
        if data is None:
            raise InvalidRequestError("the call carries no request message")
        return data

    def _admin(
        self,
        permission: str,
        request_type: type[Req],
        reply_type: type[betterproto2.Message],
        func: Callable[[Principal, Req], Awaitable[betterproto2.Message]],
    ) -> Handler:
        async def handle(stream: Stream[Any, Any]) -> None:
            with self._calls.track():
                try:
                    principal = await self._authorize(stream, permission)
                    data = await self._read_one(stream)
                    try:
                        message = request_type.FromString(data)
                    except Exception as exc:
                        raise InvalidRequestError(f"malformed {request_type.__name__}") from exc
                    if _has_missing_scalars(message):
                        raise InvalidRequestError(f"malformed {request_type.__name__}")
                    reply = await func(principal, message)
                except GRPCError:
                    raise
                except Exception as exc:
                    raise grpc_error(exc) from None
                await stream.send_message(reply)

        return Handler(handle, Cardinality.UNARY_UNARY, RawMessage, reply_type)

    # --- evaluation -------------------------------------------------------------

    async def _evaluate(self, stream: Stream[Any, Any]) -> None:
        with self._calls.track():
            try:
                await self._authorize(stream, "evaluate")
                request = to_evaluation_request(decode_request(await self._read_one(stream)))
                result = await self._evaluation.evaluate(request)
            except GRPCError:
                raise
            except Exception as exc:
                raise grpc_error(exc) from None
            await stream.send_message(RawMessage(answer(result)))

    async def _evaluate_response(self, stream: Stream[Any, Any]) -> None:
        """Judge a model's response (policy language 7.1); the answer is shaped as EvaluatePolicy's."""
        with self._calls.track():
            try:
                await self._authorize(stream, "evaluate")
                data = await self._read_one(stream)
                try:
                    wire = EvaluateResponseRequest.FromString(data)
                except Exception as exc:
                    raise InvalidRequestError(f"malformed EvaluateResponseRequest: {exc}") from None
                result = await self._evaluation.evaluate_response(to_response_request(wire))
            except GRPCError:
                raise
            except Exception as exc:
                raise grpc_error(exc) from None
            await stream.send_message(RawMessage(answer(result)))

    async def _judge_response_stream(self, stream: Stream[Any, Any]) -> None:
        """A streamed response judged delta by delta (spec 7.2; policy_grpc._response_stream)."""
        with self._calls.track():
            try:
                await self._authorize(stream, "evaluate")
                call = ResponseStreamCall(
                    self._evaluation,
                    FrameReader(stream, self._settings.max_message_bytes),
                    FrameWriter(stream),
                )
                await call.run()
            except GRPCError:
                raise
            except Exception as exc:
                raise grpc_error(exc) from None

    async def _evaluate_stream(self, stream: Stream[Any, Any]) -> None:
        with self._calls.track():
            try:
                await self._authorize(stream, "evaluate")
                pipeline = StreamPipeline(
                    self._evaluation.evaluate,
                    FrameReader(stream, self._settings.max_message_bytes),
                    FrameWriter(stream),
                    max_in_flight=self._settings.stream_max_in_flight,
                    draining=self._calls.draining,
                )
                await pipeline.run()
            except GRPCError:
                raise
            except Exception as exc:
                raise grpc_error(exc) from None

    # --- administration -----------------------------------------------------------

    async def _create(self, who: Principal, req: CreatePolicyRequest) -> CreatePolicyResponse:
        text = req.document
        record = await self._policies.create(text, author=who.id)
        return CreatePolicyResponse(policy=convert.policy_message(record))

    async def _get(self, who: Principal, req: GetPolicyRequest) -> GetPolicyResponse:
        if req.revision < 0:
            raise InvalidRequestError("`revision` must be positive (0: the current revision)")
        record = await self._policies.get(_policy_id(req.id), req.revision or None)
        return GetPolicyResponse(policy=convert.policy_message(record))

    async def _update(self, who: Principal, req: UpdatePolicyRequest) -> UpdatePolicyResponse:
        if req.expected_revision <= 0:
            raise InvalidRequestError(
                "`expected_revision` is required: the revision your change is based on"
            )
        record = await self._policies.update(
            _policy_id(req.id),
            req.document,
            expected_revision=req.expected_revision,
            author=who.id,
        )
        return UpdatePolicyResponse(policy=convert.policy_message(record))

    async def _delete(self, who: Principal, req: DeletePolicyRequest) -> DeletePolicyResponse:
        await self._policies.delete(_policy_id(req.id), author=who.id)
        return DeletePolicyResponse()

    async def _list(self, who: Principal, req: ListPoliciesRequest) -> ListPoliciesResponse:
        page = await self._policies.list(
            namespace=convert.optional_text(req.namespace, "namespace"),
            status=convert.status_filter(req.status),
            tag=convert.optional_text(req.tag, "tag"),
            limit=convert.page_size(req.page_size),
            cursor=req.page_token or None,
        )
        return ListPoliciesResponse(
            policies=[convert.policy_message(r) for r in page.items],
            next_page_token=page.next_cursor or "",
        )

    async def _validate(self, who: Principal, req: ValidatePolicyRequest) -> ValidatePolicyResponse:
        text = req.document
        try:
            report = self._policies.validate(text)
        except PolicyLoadError as exc:
            return convert.validation_failed(exc)
        return convert.validation_passed((p.id for p in report.policies), report.warnings)


def _policy_id(value: str) -> str:
    if not value:
        raise InvalidRequestError("`id` is required")
    return value


def _has_missing_scalars(message: betterproto2.Message) -> bool:
    """True when a non-optional scalar field decoded as None.

    betterproto2 leaves a field None when the wire holds it with an impossible
    wire type (a group, say) instead of refusing the message; the handlers
    would then fail on it as if it were an internal error.
    """
    for field in dataclasses.fields(message):  # type: ignore[arg-type]
        meta = field.metadata.get("betterproto")
        if meta is None or meta.optional or meta.repeated or meta.proto_type == "message":
            continue
        if getattr(message, field.name) is None:
            return True
    return False
