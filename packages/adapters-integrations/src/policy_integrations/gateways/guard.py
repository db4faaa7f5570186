"""The judged call lifecycle, for any gateway (docs/gateways.md).

A `Guard` judges one chat/completions call in three steps:

1. `before(request, identity)` -> `PreCall`: the request-phase decision on the
   mapped context (`mapping.request_context`), the request to send (rewritten
   by a `modify`), warnings, the decision id (the request id the decision is
   logged under), the policy set and the budget reservation. A deny is
   `precall.denied`; `precall.check()` raises `PolicyDenied`.
2. `after(precall, completion)` -> `PostCall`: the response-phase decision on
   the completion, the completion to pass on (redacted as the decision says),
   the reservation settled from the completion's `usage` (spec 7.3). Or
   `stream(precall, chunks)`: the chunks to pass on, through the response
   stream judge (policy_core/streams.py): only released text goes out, a
   deny raises `PolicyDenied` before the offending span, the final decision
   settles the reservation from the usage chunk.
3. `abandon(precall)`, when the call was not made (the upstream failed):
   the reservation is released (embedded; a remote one expires).

Two backends: `EmbeddedBackend` (an EvaluationService in process, over
policy_core's memory stores unless given others) and `RemoteBackend` (a
running llm-policy server over HTTP: `POST /api/v1/evaluate`,
`/api/v1/evaluate/response`, `/api/v1/usage`, with a bearer token).

Fail mode (`fail_mode`, "closed" by default): when the backend cannot answer
(unreachable, timed out, a 5xx or 429, a store down), "closed" denies with a
reason naming the failure and "open" allows with that reason as a warning.
A 4xx other than 429 (a bad token, a missing permission, a refused body) is
a misconfiguration and denies in both modes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import aiohttp
import msgspec
from policy_core.engine import PolicyEngine, response_cost
from policy_core.language import load_policies
from policy_core.memory import MemoryDecisionLog, MemoryUsageStore
from policy_core.model import Decision, Policy, Reservation
from policy_core.ports import DecisionLog, UsageStore
from policy_core.services import (
    EngineHolder,
    EvaluationRequest,
    EvaluationService,
    ResponseEvaluationRequest,
    ServiceResponseStream,
    UsageService,
)
from policy_core.streams import StreamChunk

from policy_integrations.gateways.mapping import (
    Identity,
    StreamAccumulator,
    apply_request_decision,
    apply_response_decision,
    estimated_usage,
    passed_text,
    request_context,
    response_section,
)

__all__ = [
    "Backend",
    "BackendError",
    "BackendStream",
    "BackendUnavailable",
    "EmbeddedBackend",
    "FailMode",
    "Guard",
    "GuardedStream",
    "PolicyDenied",
    "PostCall",
    "PreCall",
    "RemoteBackend",
    "SyncRunner",
]

_log = logging.getLogger(__name__)

FailMode = Literal["closed", "open"]
T = TypeVar("T")


class PolicyDenied(Exception):
    """A call the policies denied (before it was made, on its completion, or mid-stream).

    `decision` is the deny; `decision_id` the id it is logged under (the
    request id; a response decision's is `<request id>.response`);
    `reasons` the deny's reason (and its warnings); `policy_set` the policy
    revisions that decided; `phase` "request" or "response".
    """

    def __init__(
        self,
        decision: Decision,
        *,
        decision_id: str,
        phase: Literal["request", "response"] = "request",
        released: str = "",
    ) -> None:
        self.decision = decision
        self.decision_id = decision_id
        self.phase = phase
        self.policy_set = decision.policy_set
        self.reason = decision.reason or "denied by policy"
        self.reasons: tuple[str, ...] = (self.reason,)
        #: For a stream: the text released before the deny.
        self.released = released
        super().__init__(f"{self.reason} (decision {decision_id}, policy set {self.policy_set})")


class BackendError(Exception):
    """The backend could not decide. `unavailable` errors follow the fail mode; others deny.

    `status` is the policy server's HTTP status, when it answered one.
    """

    unavailable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BackendUnavailable(BackendError):
    unavailable = True


# --- backends ------------------------------------------------------------------------------


class BackendStream(Protocol):
    """One streamed response being judged by a backend."""

    async def feed(self, delta: str) -> StreamChunk: ...

    async def close(
        self,
        usage: Mapping[str, Any] | None,
        *,
        finish_reason: str | None,
        tool_calls: list[Any] | None,
        model: str | None,
    ) -> StreamChunk: ...


class Backend(Protocol):
    """Where decisions come from: the engine in process, or an llm-policy server."""

    name: str

    async def evaluate(self, context: Mapping[str, Any], request_id: str) -> Decision: ...

    async def evaluate_response(
        self,
        context: Mapping[str, Any],
        response: Mapping[str, Any],
        *,
        request_id: str,
        reservation: str | None,
    ) -> Decision: ...

    async def response_stream(
        self,
        context: Mapping[str, Any],
        *,
        request_id: str,
        reservation: str | None,
        model: str | None,
    ) -> BackendStream: ...

    async def settle(self, reservation: str, usd: float) -> bool: ...

    async def release(self, reservation: str) -> bool: ...

    async def close(self) -> None: ...


def _unavailable(exc: BaseException) -> bool:
    """Whether an exception of the embedded services is an outage (StoreUnavailable & co)."""
    from policy_core.errors import StoreUnavailable

    return isinstance(exc, StoreUnavailable | OSError | TimeoutError)


class _EmbeddedStream:
    __slots__ = ("_stream",)

    def __init__(self, stream: ServiceResponseStream) -> None:
        self._stream = stream

    async def feed(self, delta: str) -> StreamChunk:
        return self._stream.feed(delta)

    async def close(
        self,
        usage: Mapping[str, Any] | None,
        *,
        finish_reason: str | None,
        tool_calls: list[Any] | None,
        model: str | None,
    ) -> StreamChunk:
        chunk, _, _ = await self._stream.close(
            usage, finish_reason=finish_reason, tool_calls=tool_calls, model=model
        )
        return chunk


class EmbeddedBackend:
    """The engine in the gateway's process: an EvaluationService and a UsageService.

    `EmbeddedBackend.of(policies)` builds them over policy_core's memory
    stores (usage counters and a decision log in this process: budgets and
    rate limits then count this process's calls only); pass `usage` /
    `log` to use other stores (e.g. the Redis or PostgreSQL adapters).
    """

    name = "embedded"

    def __init__(
        self,
        evaluation: EvaluationService,
        usage: UsageService | None = None,
        *,
        policies: Sequence[str] | None = None,
        namespace: str | None = None,
    ) -> None:
        self.evaluation = evaluation
        self.usage = usage
        self._policies = policies
        self._namespace = namespace

    @classmethod
    def of(
        cls,
        policies: str | os.PathLike[str] | PolicyEngine | Iterable[Policy],
        *,
        usage: UsageStore | None = None,
        log: DecisionLog | None = None,
        default_decision: Literal["allow", "deny"] = "allow",
        select: Sequence[str] | None = None,
        namespace: str | None = None,
    ) -> EmbeddedBackend:
        """A backend over `policies`: a file or directory of policies, an engine, or Policy objects."""
        if isinstance(policies, PolicyEngine):
            engine = policies
        elif isinstance(policies, str | os.PathLike):
            engine = PolicyEngine(load_policies(Path(policies)), default_decision=default_decision)
        else:
            engine = PolicyEngine(tuple(policies), default_decision=default_decision)
        store = usage if usage is not None else MemoryUsageStore()
        service = EvaluationService(
            EngineHolder(engine),
            usage=store,
            log=log if log is not None else MemoryDecisionLog(max_records=10_000),
        )
        return cls(service, UsageService(store), policies=select, namespace=namespace)

    async def evaluate(self, context: Mapping[str, Any], request_id: str) -> Decision:
        try:
            result = await self.evaluation.evaluate(
                EvaluationRequest(
                    context=context,
                    policies=self._policies,
                    namespace=self._namespace,
                    request_id=request_id,
                )
            )
        except Exception as exc:
            raise _embedded_error(exc) from exc
        return result.decision

    async def evaluate_response(
        self,
        context: Mapping[str, Any],
        response: Mapping[str, Any],
        *,
        request_id: str,
        reservation: str | None,
    ) -> Decision:
        try:
            result = await self.evaluation.evaluate_response(
                ResponseEvaluationRequest(
                    context=context,
                    response=response,
                    policies=self._policies,
                    namespace=self._namespace,
                    request_id=request_id,
                    reservation=reservation,
                )
            )
        except Exception as exc:
            raise _embedded_error(exc) from exc
        return result.decision

    async def response_stream(
        self,
        context: Mapping[str, Any],
        *,
        request_id: str,
        reservation: str | None,
        model: str | None,
    ) -> BackendStream:
        try:
            stream = await self.evaluation.response_stream(
                ResponseEvaluationRequest(
                    context=context,
                    response={"model": model} if model else {},
                    policies=self._policies,
                    namespace=self._namespace,
                    request_id=request_id,
                    reservation=reservation,
                )
            )
        except Exception as exc:
            raise _embedded_error(exc) from exc
        return _EmbeddedStream(stream)

    async def settle(self, reservation: str, usd: float) -> bool:
        if self.usage is None:
            return False
        return await self.usage.settle(reservation, usd) is not None

    async def release(self, reservation: str) -> bool:
        if self.usage is None:
            return False
        return await self.usage.release(reservation)

    async def close(self) -> None:
        return None


def _embedded_error(exc: Exception) -> BackendError:
    kind = BackendUnavailable if _unavailable(exc) else BackendError
    return kind(f"the embedded policy engine failed: {type(exc).__name__}: {exc}")


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str = ""


_decision_decoder = msgspec.json.Decoder(Decision)


class _RemoteStream:
    """A streamed response judged by a remote server, which has no streaming HTTP route.

    Every `window` characters the text so far is judged (`evaluate/response`,
    dry run); when it passes, the text it passes on except its last `window`
    characters is released (a pattern or PII span of at most `window`
    characters that reaches into the released part was seen whole). A deny
    stops the stream. `close` judges the whole text for real (logged, and
    the reservation settled from `usage`) and releases the rest.
    """

    def __init__(
        self,
        backend: RemoteBackend,
        context: Mapping[str, Any],
        *,
        request_id: str,
        reservation: str | None,
        model: str | None,
        window: int,
    ) -> None:
        self._backend = backend
        self._context = context
        self._request_id = request_id
        self._reservation = reservation
        self._model = model
        self._window = window
        self._parts: list[str] = []
        self._size = 0
        self._checked = 0
        self._released = ""
        self._denied: Decision | None = None

    def _response(self, text: str) -> dict[str, Any]:
        response: dict[str, Any] = {"text": text}
        if self._model:
            response["model"] = self._model
        return response

    async def feed(self, delta: str) -> StreamChunk:
        self._parts.append(delta)
        self._size += len(delta)
        if self._denied is not None:
            return StreamChunk("", self._denied)
        window = self._window
        if self._size <= window or self._size - self._checked < window:
            return StreamChunk("")
        text = "".join(self._parts)
        self._checked = self._size
        decision = await self._backend.judge(
            self._context, self._response(text), request_id=self._request_id, dry_run=True
        )
        if decision.decision == "deny":
            self._denied = decision
            return StreamChunk("", decision)
        passed = passed_text(decision, text)
        if not passed.endswith(text[-window:]):
            return StreamChunk("")  # a change reaches into the held tail: wait
        candidate = passed[: len(passed) - window]
        if len(candidate) <= len(self._released) or not candidate.startswith(self._released):
            return StreamChunk("")
        out = candidate[len(self._released) :]
        self._released = candidate
        return StreamChunk(out)

    async def close(
        self,
        usage: Mapping[str, Any] | None,
        *,
        finish_reason: str | None,
        tool_calls: list[Any] | None,
        model: str | None,
    ) -> StreamChunk:
        text = "".join(self._parts)
        response = self._response(text)
        for key, value in (
            ("usage", usage),
            ("finish_reason", finish_reason),
            ("tool_calls", tool_calls),
            ("model", model),
        ):
            if value is not None:
                response[key] = value
        decision = await self._backend.judge(
            self._context,
            response,
            request_id=self._request_id,
            reservation=self._reservation,
        )
        if decision.decision == "deny":
            return StreamChunk("", decision)
        passed = passed_text(decision, text)
        if not passed.startswith(self._released):
            # The final decision changed text already released: stop rather than mend.
            refused = msgspec.structs.replace(
                decision,
                decision="deny",
                allowed=False,
                reason="the final decision of the stream changed text already released",
            )
            return StreamChunk("", refused)
        return StreamChunk(passed[len(self._released) :], decision)


class RemoteBackend:
    """A running llm-policy server at `url` (its base, e.g. `http://127.0.0.1:8080`).

    `token`: a JWT or API key (`Authorization: Bearer`, or `X-API-Key` for a
    key starting `lpk_`) with the `evaluate` and `usage:write` permissions
    (the `evaluator` role). `timeout` bounds each call (seconds).
    `stream_window`: characters a streamed response holds back between two
    judgements (see `_RemoteStream`); it should be at least the server's
    stream window (1,024 unless the policies say otherwise).
    """

    name = "remote"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 2.0,
        stream_window: int = 1024,
        policies: Sequence[str] | None = None,
        namespace: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Accept": "application/json", "User-Agent": "llm-policy-gateway"}
        if token:
            if token.startswith("lpk_"):
                self._headers["X-API-Key"] = token
            else:
                self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._window = max(1, stream_window)
        self._policies = list(policies) if policies else None
        self._namespace = namespace
        # One session per event loop (a sync client runs one loop per calling thread).
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = self._sessions[loop] = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=100),
            )
        return session

    async def _post(self, path: str, body: dict[str, Any]) -> bytes:
        if self._policies:
            body.setdefault("policies", self._policies)
        if self._namespace:
            body.setdefault("namespace", self._namespace)
        where = self.url + path
        try:
            async with self._client().post(
                where, data=msgspec.json.encode(body), headers={"Content-Type": "application/json"}
            ) as answer:
                data = await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            raise BackendUnavailable(
                f"the policy server at {self.url} is unreachable ({detail})"
            ) from exc
        if status == 200:
            return data
        detail = _problem_detail(data)
        if status >= 500 or status == 429:
            raise BackendUnavailable(
                f"the policy server answered {status} on {path}: {detail}", status=status
            )
        raise BackendError(
            f"the policy server refused {path} with {status}: {detail}", status=status
        )

    async def evaluate(self, context: Mapping[str, Any], request_id: str) -> Decision:
        data = await self._post(
            "/api/v1/evaluate", {"context": dict(context), "request_id": request_id}
        )
        return _decode_decision(data)

    async def judge(
        self,
        context: Mapping[str, Any],
        response: Mapping[str, Any],
        *,
        request_id: str,
        reservation: str | None = None,
        dry_run: bool = False,
    ) -> Decision:
        body: dict[str, Any] = {
            "context": dict(context),
            "response": dict(response),
            "request_id": request_id,
        }
        if reservation:
            body["reservation"] = reservation
        if dry_run:
            body["dry_run"] = True
        return _decode_decision(await self._post("/api/v1/evaluate/response", body))

    async def evaluate_response(
        self,
        context: Mapping[str, Any],
        response: Mapping[str, Any],
        *,
        request_id: str,
        reservation: str | None,
    ) -> Decision:
        return await self.judge(context, response, request_id=request_id, reservation=reservation)

    async def response_stream(
        self,
        context: Mapping[str, Any],
        *,
        request_id: str,
        reservation: str | None,
        model: str | None,
    ) -> BackendStream:
        return _RemoteStream(
            self,
            context,
            request_id=request_id,
            reservation=reservation,
            model=model,
            window=self._window,
        )

    async def settle(self, reservation: str, usd: float) -> bool:
        try:
            await self._post("/api/v1/usage", {"reservation": reservation, "usd": usd})
        except BackendError as exc:
            if exc.status == 404:  # reservation_not_found: unknown, or settled already
                return False
            raise
        return True

    async def release(self, reservation: str) -> bool:
        # The HTTP API has no release: an unsettled reservation expires after its TTL.
        return False

    async def close(self) -> None:
        """Close the session of the running loop (each loop's is closed on its own loop)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None and not session.closed:
            await session.close()


def _problem_detail(data: bytes) -> str:
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return data[:200].decode("utf-8", "replace")
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)
    return str(body)


def _decode_decision(data: bytes) -> Decision:
    try:
        return _decision_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BackendError(
            f"the policy server's decision does not fit its contract: {exc}"
        ) from exc


# --- the lifecycle -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PreCall:
    """The request-phase judgement of one call (see Guard.before)."""

    request: dict[str, Any]  # what to send upstream: the original, or rewritten by a modify
    original: Mapping[str, Any]
    context: dict[str, Any]
    decision: Decision
    decision_id: str
    failure: str | None = None  # the backend's failure, when the fail mode decided
    modified: bool = False  # whether the decision rewrote the request

    @property
    def denied(self) -> bool:
        return self.decision.decision == "deny"

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.decision.warnings

    @property
    def policy_set(self) -> str:
        return self.decision.policy_set

    @property
    def reservation(self) -> Reservation | None:
        return self.decision.reservation

    def check(self) -> PreCall:
        """This PreCall, or PolicyDenied when the request was denied."""
        if self.denied:
            raise PolicyDenied(self.decision, decision_id=self.decision_id)
        return self


@dataclass(frozen=True, kw_only=True)
class PostCall:
    """The response-phase judgement of a completion (see Guard.after)."""

    completion: dict[str, Any]  # what to pass on (redacted where the decision says)
    response: dict[str, Any]  # the `response` section judged
    decision: Decision
    decision_id: str
    precall: PreCall
    cost: float | None = None  # response.cost: what the reservation was settled at
    failure: str | None = None
    usage_estimated: bool = False  # the completion had no usage: `mapping.estimated_usage`

    @property
    def denied(self) -> bool:
        return self.decision.decision == "deny"

    @property
    def warnings(self) -> tuple[str, ...]:
        """The warnings of both phases, request first."""
        return (*self.precall.warnings, *self.decision.warnings)

    @property
    def policy_set(self) -> str:
        return self.decision.policy_set or self.precall.policy_set

    def check(self) -> PostCall:
        if self.denied:
            raise PolicyDenied(self.decision, decision_id=self.decision_id, phase="response")
        return self


def _synthetic(decision: Literal["allow", "deny"], reason: str) -> Decision:
    if decision == "deny":
        return Decision(decision="deny", allowed=False, reason=reason)
    return Decision(decision="allow", allowed=True, warnings=(reason,))


def _response_id(request_id: str) -> str:
    return f"{request_id}.response"


class Guard:
    """Judges chat/completions calls through a backend (see the module doc).

    `Guard.embedded(policies)` / `Guard.remote(url, token=...)` build one;
    `Guard.from_config({...})` reads the same choice from a gateway's
    configuration (`mode: embedded` with `policies`, or `mode: remote` with
    `url`, `token`, `timeout`; `fail_mode`, `provider` for both).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        fail_mode: FailMode = "closed",
        provider: str | None = "openai",
        include_usage: bool = True,
    ) -> None:
        if fail_mode not in ("closed", "open"):
            raise ValueError(f"fail_mode must be 'closed' or 'open', not {fail_mode!r}")
        self.backend = backend
        self.fail_mode: FailMode = fail_mode
        self.provider = provider
        #: Ask the upstream for a usage chunk at the end of a stream (to settle its spend).
        self.include_usage = include_usage

    @classmethod
    def embedded(
        cls,
        policies: str | os.PathLike[str] | PolicyEngine | Iterable[Policy],
        *,
        fail_mode: FailMode = "closed",
        provider: str | None = "openai",
        **options: Any,
    ) -> Guard:
        return cls(EmbeddedBackend.of(policies, **options), fail_mode=fail_mode, provider=provider)

    @classmethod
    def remote(
        cls,
        url: str,
        *,
        token: str | None = None,
        fail_mode: FailMode = "closed",
        provider: str | None = "openai",
        **options: Any,
    ) -> Guard:
        return cls(
            RemoteBackend(url, token=token, **options), fail_mode=fail_mode, provider=provider
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Guard:
        """A Guard from a gateway's settings: `mode` (`embedded` | `remote`) and its options."""
        options = dict(config)
        mode = options.pop("mode", "embedded")
        fail_mode = options.pop("fail_mode", "closed")
        provider = options.pop("provider", "openai")
        token_env = options.pop("token_env", None)
        if mode == "embedded":
            if "policies" not in options:
                raise ValueError("an embedded guard needs `policies` (a file or directory)")
            return cls.embedded(
                options.pop("policies"), fail_mode=fail_mode, provider=provider, **options
            )
        if mode == "remote":
            if "url" not in options:
                raise ValueError("a remote guard needs the `url` of an llm-policy server")
            if token_env and "token" not in options:
                options["token"] = os.environ.get(token_env)
            return cls.remote(options.pop("url"), fail_mode=fail_mode, provider=provider, **options)
        raise ValueError(f"mode must be 'embedded' or 'remote', not {mode!r}")

    def _failed(self, exc: BackendError) -> Decision:
        if exc.unavailable and self.fail_mode == "open":
            _log.warning("policy backend unavailable, failing open: %s", exc)
            return _synthetic("allow", f"policy check skipped (failing open): {exc}")
        _log.warning("policy backend failed, denying: %s", exc)
        return _synthetic("deny", f"policy check failed (failing closed): {exc}")

    # --- request phase ------------------------------------------------------------------

    async def before(
        self,
        request: Mapping[str, Any],
        identity: Identity | None = None,
        *,
        request_id: str | None = None,
    ) -> PreCall:
        """The request-phase decision for `request` by `identity`; the request to send."""
        rid = request_id or os.urandom(16).hex()
        context = request_context(request, identity, provider=self.provider, request_id=rid)
        failure = None
        try:
            decision = await self.backend.evaluate(context, rid)
        except BackendError as exc:
            decision, failure = self._failed(exc), str(exc)
        send = apply_request_decision(request, decision)
        modified = send != dict(request)
        if send.get("stream") and self.include_usage:
            options = dict(send.get("stream_options") or {})
            if not options.get("include_usage"):
                options["include_usage"] = True
                send["stream_options"] = options
        return PreCall(
            request=send,
            original=request,
            context=context,
            decision=decision,
            decision_id=rid,
            failure=failure,
            modified=modified,
        )

    async def abandon(self, precall: PreCall) -> None:
        """The call was not made (or failed before answering): release its reservation."""
        reservation = precall.reservation
        if reservation is None:
            return
        try:
            await self.backend.release(reservation.id)
        except BackendError:
            _log.warning("releasing reservation %s failed; it expires", reservation.id)

    async def settle(self, precall: PreCall, usd: float) -> bool:
        """Settle the call's reservation at `usd` (when the caller prices the call itself)."""
        reservation = precall.reservation
        if reservation is None:
            return False
        return await self.backend.settle(reservation.id, usd)

    # --- response phase -----------------------------------------------------------------

    async def after(self, precall: PreCall, completion: Mapping[str, Any]) -> PostCall:
        """The response-phase decision on `completion`; the completion to pass on.

        The reservation of the call is settled from the completion's `usage`.
        """
        response = response_section(completion)
        estimated = "usage" not in response
        if estimated:
            response["usage"] = estimated_usage(precall.context, response["text"])
        reservation = precall.reservation.id if precall.reservation else None
        failure = None
        try:
            decision = await self.backend.evaluate_response(
                precall.context,
                response,
                request_id=precall.decision_id,
                reservation=reservation,
            )
        except BackendError as exc:
            decision, failure = self._failed(exc), str(exc)
        passed = (
            apply_response_decision(completion, decision)
            if decision.decision != "deny"
            else dict(completion)
        )
        return PostCall(
            completion=passed,
            response=response,
            decision=decision,
            decision_id=_response_id(precall.decision_id),
            precall=precall,
            cost=response_cost(precall.context, response),
            failure=failure,
            usage_estimated=estimated,
        )

    def stream(self, precall: PreCall, chunks: AsyncIterable[Mapping[str, Any]]) -> GuardedStream:
        """The chunks to pass on of a streamed completion (see GuardedStream)."""
        return GuardedStream(self, precall, chunks)


def _with_content(chunk: Mapping[str, Any], text: str) -> dict[str, Any]:
    """A copy of a chunk whose only choice's delta carries `text` (no tool calls, no finish)."""
    out = {k: v for k, v in chunk.items() if k != "usage"}
    choice = _choice0(chunk)
    delta: dict[str, Any] = {}
    if choice is not None and isinstance(choice.get("delta"), Mapping):
        delta = {k: v for k, v in choice["delta"].items() if k != "tool_calls"}
    delta["content"] = text
    out["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}]
    return out


def _without_text(chunk: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a chunk without the text of its first choice's delta (it goes out judged)."""
    out = dict(chunk)
    choices = out.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        first = dict(choices[0])
        delta = dict(first.get("delta") or {})
        delta.pop("content", None)
        first["delta"] = delta
        out["choices"] = [first, *choices[1:]]
    return out


def _choice0(chunk: Mapping[str, Any]) -> Mapping[str, Any] | None:
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        return choices[0]
    return None


@dataclass(eq=False)
class GuardedStream:
    """A streamed completion passed through the response stream judge.

    Iterating yields chunk dicts: each upstream chunk's text delta is replaced
    by the text the judge releases (chunks that carry nothing then are
    skipped); tool-call deltas, the finish chunk and the usage chunk are held
    until the stream ends and the final decision allows them. A deny raises
    `PolicyDenied` (phase "response", `released` the text sent before it)
    and stops reading the upstream. After the last chunk `decision` is the
    final response decision. The usage chunk is passed on only when the
    caller asked for it (`stream_options.include_usage`).
    """

    guard: Guard
    precall: PreCall
    chunks: AsyncIterable[Mapping[str, Any]]
    decision: Decision | None = None
    released: list[str] = field(default_factory=list)
    failure: str | None = None

    @property
    def decision_id(self) -> str:
        return _response_id(self.precall.decision_id)

    @property
    def policy_set(self) -> str:
        return self.precall.policy_set

    @property
    def warnings(self) -> tuple[str, ...]:
        later = self.decision.warnings if self.decision is not None else ()
        return (*self.precall.warnings, *later)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._run()

    def _deny(self, decision: Decision) -> PolicyDenied:
        self.decision = decision
        return PolicyDenied(
            decision,
            decision_id=self.decision_id,
            phase="response",
            released="".join(self.released),
        )

    def _unjudged(self, raw: list[str]) -> str:
        """The received text not released yet (failing open), when it lines up with the released."""
        text, out = "".join(raw), "".join(self.released)
        return text[len(out) :] if text.startswith(out) else ""

    def _open(self, exc: BackendError) -> Decision:
        """The decision of a backend failure: raises the deny, or answers the fail-open allow."""
        self.failure = str(exc)
        failed = self.guard._failed(exc)
        if failed.decision == "deny":
            raise self._deny(failed) from exc
        self.decision = failed
        return failed

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        guard, precall = self.guard, self.precall
        wants_usage = bool((precall.original.get("stream_options") or {}).get("include_usage"))
        acc = StreamAccumulator()
        held: list[dict[str, Any]] = []  # tool calls, finish and usage chunks: after the verdict
        raw: list[str] = []
        last: Mapping[str, Any] | None = None
        judge: BackendStream | None = None
        try:
            judge = await guard.backend.response_stream(
                precall.context,
                request_id=precall.decision_id,
                reservation=precall.reservation.id if precall.reservation else None,
                model=precall.request.get("model"),
            )
        except BackendError as exc:
            self._open(exc)
        iterator = aiter(self.chunks)
        try:
            async for chunk in iterator:
                delta = acc.add(chunk)
                choice = _choice0(chunk)
                if choice is None:  # the usage chunk
                    if wants_usage:
                        held.append(dict(chunk))
                    continue
                last = chunk
                raw.append(delta)
                has_calls = bool((choice.get("delta") or {}).get("tool_calls"))
                if has_calls or choice.get("finish_reason") is not None:
                    held.append(_without_text(chunk))
                if judge is None:
                    if delta:
                        self.released.append(delta)
                        yield _with_content(chunk, delta)
                    continue
                try:
                    out = await judge.feed(delta) if delta else StreamChunk("")
                except BackendError as exc:
                    self._open(exc)
                    judge = None
                    out = StreamChunk(self._unjudged(raw))
                if out.decision is not None and out.decision.decision == "deny":
                    if out.text:
                        self.released.append(out.text)
                        yield _with_content(chunk, out.text)
                    if judge is not None:
                        await self._close_quietly(judge, acc, "".join(raw))
                    raise self._deny(out.decision)
                if out.text:
                    self.released.append(out.text)
                    yield _with_content(chunk, out.text)
                elif not delta and not has_calls and choice.get("finish_reason") is None:
                    yield dict(chunk)  # e.g. the role chunk
            if judge is not None:
                try:
                    final = await judge.close(
                        acc.usage or estimated_usage(precall.context, "".join(raw)),
                        finish_reason=acc.finish_reason,
                        tool_calls=acc.tool_calls,
                        model=acc.model,
                    )
                except BackendError as exc:
                    final = StreamChunk(self._unjudged(raw), self._open(exc))
                if final.decision is not None and final.decision.decision == "deny":
                    raise self._deny(final.decision)
                self.decision = final.decision
                if final.text and last is not None:
                    self.released.append(final.text)
                    yield _with_content(last, final.text)
            for chunk in held:
                yield chunk
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None:
                await closer()

    async def _close_quietly(self, judge: BackendStream, acc: StreamAccumulator, text: str) -> None:
        """Record the final decision of a stream cut by a deny (logged; best effort).

        The upstream's usage never comes: the reservation is settled at the
        estimate of what was received (`mapping.estimated_usage`).
        """
        usage = acc.usage or estimated_usage(self.precall.context, text)
        try:
            await judge.close(
                usage, finish_reason="policy_denied", tool_calls=acc.tool_calls, model=acc.model
            )
        except Exception:
            _log.warning("recording the decision of a denied stream failed", exc_info=True)


# --- sync callers --------------------------------------------------------------------------


class SyncRunner:
    """Runs a Guard's coroutines for sync callers, on an event loop of the calling thread.

    `run(coro)` runs it to completion on this thread's loop (made on first
    use; no thread hand-off, so a call costs what the async one does). Called
    from a thread whose own loop is running (sync code inside a coroutine),
    it runs the coroutine on a loop in a helper thread instead and waits.
    `close(final)` runs `final()` (e.g. the backend's close) on each loop it
    made, then closes them; call it once the client is done.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._helper: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            loop = getattr(self._local, "loop", None)
            if loop is None or loop.is_closed():
                loop = self._local.loop = asyncio.new_event_loop()
                with self._lock:
                    self._loops.append(loop)
            return loop.run_until_complete(coro)
        return asyncio.run_coroutine_threadsafe(coro, self._helper_loop()).result()

    def _helper_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._helper is None:
                self._helper = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._helper.run_forever, name="llm-policy-guard", daemon=True
                )
                self._thread.start()
            return self._helper

    def close(self, final: Callable[[], Coroutine[Any, Any, Any]] | None = None) -> None:
        with self._lock:
            loops, self._loops = self._loops, []
            helper, thread, self._helper, self._thread = self._helper, self._thread, None, None
        for loop in loops:
            if loop.is_closed() or loop.is_running():
                continue
            if final is not None:
                loop.run_until_complete(final())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        if helper is not None and thread is not None:
            if final is not None:
                asyncio.run_coroutine_threadsafe(final(), helper).result()
            helper.call_soon_threadsafe(helper.stop)
            thread.join(10)
            helper.close()
