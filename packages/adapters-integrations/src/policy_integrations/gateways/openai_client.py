"""The guarded OpenAI client for application code (docs/gateways.md, "The guarded OpenAI client").

`GuardedAsyncOpenAI(openai.AsyncOpenAI(...), guard)` and
`GuardedOpenAI(openai.OpenAI(...), guard)` behave like the clients they wrap,
except that `chat.completions.create(...)`, with or without `stream=True`, is
judged before and after the call by a `Guard`:

- deny: `PolicyDenied` (carrying the decision) is raised; a denied request
  never reaches the upstream;
- modify: the request sent upstream is rewritten (model, max_tokens,
  messages redacted, ...);
- warn: the call goes ahead; the warnings are on the result;
- the completion is judged by the response-phase rules (redacted text passed
  on, a deny raises), a stream through the stream judge (only released text
  comes out; a deny raises `PolicyDenied` before the offending span);
- the call's budget reservation is settled from the completion's usage.

Only `chat.completions.create` is judged (and `with_options(...)` gives a
client still guarded); `with_raw_response` / `with_streaming_response`, which
would bypass it, are refused. Every other API of the wrapped client
(`responses`, `beta`, `embeddings`, ...) is passed through unjudged.

Every result (a completion, a stream) has `llm_policy`: a `PolicyInfo` with
the decision ids, the policy set and the warnings, so that application logs
join the decision log. Everything else (`client.models`, `client.embeddings`,
...) is the wrapped client's, unguarded.

The caller is named by `identity=` (on the client or per call, `Identity`),
or else by `x-llm-policy-*` headers (`extra_headers` of the call, or the
client's `default_headers`; see `mapping.identity_from_headers`), which are
not forwarded upstream.

Needs the `openai` extra: `llm-policy-adapters-integrations[openai]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from policy_core.model import Decision

from policy_integrations.gateways.guard import (
    Guard,
    GuardedStream,
    PolicyDenied,
    PostCall,
    PreCall,
    SyncRunner,
)
from policy_integrations.gateways.mapping import HEADER_PREFIX, Identity, identity_from_headers

__all__ = ["GuardedAsyncOpenAI", "GuardedOpenAI", "PolicyDenied", "PolicyInfo"]

# The keyword arguments of `create` that are the SDK's, not the request body's.
_OPTIONS = ("extra_headers", "extra_query", "extra_body", "timeout")
# Ways to call create that would bypass the guard: refused rather than passed through.
_UNGUARDED = frozenset({"with_raw_response", "with_streaming_response"})


def _delegate(target: Any, name: str, where: str) -> Any:
    if name in _UNGUARDED:
        raise AttributeError(
            f"{where}.{name} is not guarded; call {where}.create (its result has llm_policy)"
        )
    return getattr(target, name)


@dataclass(kw_only=True)
class PolicyInfo:
    """What the policies said about one call (the `llm_policy` attribute of a result).

    `decision_id` is the request decision's id in the decision log (its
    request id); `response_decision_id` the response decision's
    (`<decision_id>.response`); `warnings` those of both phases (for a
    stream, the response's once it has ended); `request` what was sent
    upstream (after any modify).
    """

    decision_id: str
    policy_set: str
    decision: Decision
    request: dict[str, Any]
    response_decision_id: str = ""
    response_decision: Decision | None = None
    warnings: tuple[str, ...] = ()
    modified: bool = False
    failures: list[str] = field(default_factory=list)


def _info(precall: PreCall) -> PolicyInfo:
    return PolicyInfo(
        decision_id=precall.decision_id,
        policy_set=precall.policy_set,
        decision=precall.decision,
        request=precall.request,
        response_decision_id=f"{precall.decision_id}.response",
        warnings=precall.warnings,
        modified=precall.modified,
        failures=[precall.failure] if precall.failure else [],
    )


def _given(value: Any) -> bool:
    return not isinstance(value, openai.NotGiven | openai.Omit)


def _split(
    kwargs: Mapping[str, Any],
    identity: Identity | None,
    default_headers: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], Identity | None]:
    """(the request body, the SDK options, the identity) of a `create` call."""
    body: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in kwargs.items():
        if not _given(value):
            continue
        (options if key in _OPTIONS else body)[key] = value
    headers = options.get("extra_headers")
    if isinstance(headers, Mapping):
        options["extra_headers"] = {
            k: v for k, v in headers.items() if not k.lower().startswith(HEADER_PREFIX)
        }
    if identity is None:
        claimed = {**default_headers, **(headers if isinstance(headers, Mapping) else {})}
        if any(k.lower().startswith(HEADER_PREFIX) for k in claimed):
            identity = identity_from_headers(
                {k: str(v) for k, v in claimed.items() if isinstance(v, str)}
            )
    return body, options, identity


def _dump(value: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = value.model_dump(mode="json", exclude_unset=True)
    return dumped


def _set_info(obj: Any, info: PolicyInfo) -> None:
    # Not a model field: kept out of model_dump() and the JSON of the result.
    object.__setattr__(obj, "llm_policy", info)


def _finish(info: PolicyInfo, post_decision: Decision, warnings: tuple[str, ...]) -> None:
    info.response_decision = post_decision
    info.warnings = warnings
    if post_decision.policy_set:
        info.policy_set = post_decision.policy_set


def _judged(info: PolicyInfo, post: PostCall) -> ChatCompletion:
    """The completion as the response phase left it, carrying `info` (async and sync alike)."""
    if post.failure:
        info.failures.append(post.failure)
    completion = ChatCompletion.model_validate(post.completion)
    _finish(info, post.decision, post.warnings)
    _set_info(completion, info)
    return completion


# --- async ---------------------------------------------------------------------------------


class GuardedAsyncStream:
    """A guarded `AsyncStream[ChatCompletionChunk]`: iterate it as the SDK's stream.

    `llm_policy` is filled as the stream goes (the response decision once it
    ended); `close()` closes the upstream response.
    """

    def __init__(self, upstream: Any, judged: GuardedStream, info: PolicyInfo) -> None:
        self._upstream = upstream
        self._judged = judged
        self.llm_policy = info
        self.response = getattr(upstream, "response", None)

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        return self._run()

    async def _run(self) -> AsyncIterator[ChatCompletionChunk]:
        try:
            async for chunk in self._judged:
                yield ChatCompletionChunk.model_validate(chunk)
        finally:
            if self._judged.failure:
                self.llm_policy.failures.append(self._judged.failure)
            if self._judged.decision is not None:
                _finish(self.llm_policy, self._judged.decision, self._judged.warnings)
            await self.close()

    async def close(self) -> None:
        closer = getattr(self._upstream, "close", None)
        if closer is not None:
            await closer()

    async def __aenter__(self) -> GuardedAsyncStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def _chunks(upstream: Any) -> AsyncIterator[dict[str, Any]]:
    async for chunk in upstream:
        yield _dump(chunk)


class _AsyncCompletions:
    def __init__(self, owner: GuardedAsyncOpenAI) -> None:
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return _delegate(self._owner.client.chat.completions, name, "chat.completions")

    async def create(self, *, identity: Identity | None = None, **kwargs: Any) -> Any:
        """`chat.completions.create`, judged (see the module doc); PolicyDenied on a deny."""
        owner = self._owner
        body, options, who = _split(
            kwargs, identity or owner.identity, owner.client.default_headers
        )
        guard = owner.guard
        precall = (await guard.before(body, who)).check()
        info = _info(precall)
        try:
            result = await owner.client.chat.completions.create(**precall.request, **options)
        except Exception:
            await guard.abandon(precall)
            raise
        if precall.request.get("stream"):
            return GuardedAsyncStream(result, guard.stream(precall, _chunks(result)), info)
        return _judged(info, (await guard.after(precall, _dump(result))).check())


class _AsyncChat:
    def __init__(self, owner: GuardedAsyncOpenAI) -> None:
        self._owner = owner
        self.completions = _AsyncCompletions(owner)

    def __getattr__(self, name: str) -> Any:
        return _delegate(self._owner.client.chat, name, "chat")


class GuardedAsyncOpenAI:
    """An `openai.AsyncOpenAI` whose chat completions are judged by `guard`."""

    def __init__(
        self, client: openai.AsyncOpenAI, guard: Guard, *, identity: Identity | None = None
    ) -> None:
        self.client = client
        self.guard = guard
        self.identity = identity
        self.chat = _AsyncChat(self)

    def __getattr__(self, name: str) -> Any:
        return _delegate(self.client, name, "client")

    def with_options(self, **options: Any) -> GuardedAsyncOpenAI:
        """The wrapped client's `with_options(...)`, still guarded (same guard, same identity)."""
        return GuardedAsyncOpenAI(
            self.client.with_options(**options), self.guard, identity=self.identity
        )

    async def close(self) -> None:
        """Close the wrapped client and the guard's backend."""
        await self.client.close()
        await self.guard.backend.close()

    async def __aenter__(self) -> GuardedAsyncOpenAI:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


# --- sync ----------------------------------------------------------------------------------


async def _pull(upstream: Any) -> AsyncIterator[dict[str, Any]]:
    """The chunks of a sync SDK stream, read as the loop steps (it is the calling thread's)."""
    for chunk in upstream:
        yield _dump(chunk)


class GuardedSyncStream(Iterator[ChatCompletionChunk]):
    """A guarded `Stream[ChatCompletionChunk]` for the sync client (see GuardedAsyncStream)."""

    def __init__(
        self, runner: SyncRunner, upstream: Any, judged: GuardedStream, info: PolicyInfo
    ) -> None:
        self._runner = runner
        self._upstream = upstream
        self._judged = judged
        self._iterator = judged.__aiter__()
        self.llm_policy = info
        self.response = getattr(upstream, "response", None)
        self._done = False

    def __iter__(self) -> GuardedSyncStream:
        return self

    def __next__(self) -> ChatCompletionChunk:
        if self._done:
            raise StopIteration
        try:
            chunk = self._runner.run(self._next())
        except StopAsyncIteration:
            self._end()
            raise StopIteration from None
        except BaseException:
            self._end()
            raise
        return ChatCompletionChunk.model_validate(chunk)

    async def _next(self) -> dict[str, Any]:
        return await anext(self._iterator)

    def _end(self) -> None:
        self._done = True
        if self._judged.failure:
            self.llm_policy.failures.append(self._judged.failure)
        if self._judged.decision is not None:
            _finish(self.llm_policy, self._judged.decision, self._judged.warnings)
        self.close()

    def close(self) -> None:
        closer = getattr(self._upstream, "close", None)
        if closer is not None:
            closer()

    def __enter__(self) -> GuardedSyncStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Completions:
    def __init__(self, owner: GuardedOpenAI) -> None:
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return _delegate(self._owner.client.chat.completions, name, "chat.completions")

    def create(self, *, identity: Identity | None = None, **kwargs: Any) -> Any:
        """`chat.completions.create`, judged (see the module doc); PolicyDenied on a deny."""
        owner = self._owner
        run = owner.runner.run
        body, options, who = _split(
            kwargs, identity or owner.identity, owner.client.default_headers
        )
        guard = owner.guard
        precall = run(guard.before(body, who)).check()
        info = _info(precall)
        try:
            result = owner.client.chat.completions.create(**precall.request, **options)
        except Exception:
            run(guard.abandon(precall))
            raise
        if precall.request.get("stream"):
            return GuardedSyncStream(
                owner.runner, result, guard.stream(precall, _pull(result)), info
            )
        return _judged(info, run(guard.after(precall, _dump(result))).check())


class _Chat:
    def __init__(self, owner: GuardedOpenAI) -> None:
        self._owner = owner
        self.completions = _Completions(owner)

    def __getattr__(self, name: str) -> Any:
        return _delegate(self._owner.client.chat, name, "chat")


class GuardedOpenAI:
    """An `openai.OpenAI` whose chat completions are judged by `guard`.

    The guard runs on an event loop of the calling thread (a `SyncRunner`),
    so the guard and its backend are this client's: build one Guard per
    GuardedOpenAI. `close()` closes the backend on each of those loops.
    """

    def __init__(
        self,
        client: openai.OpenAI,
        guard: Guard,
        *,
        identity: Identity | None = None,
        runner: SyncRunner | None = None,
    ) -> None:
        self.client = client
        self.guard = guard
        self.identity = identity
        self.runner = runner if runner is not None else SyncRunner()
        self.chat = _Chat(self)

    def __getattr__(self, name: str) -> Any:
        return _delegate(self.client, name, "client")

    def with_options(self, **options: Any) -> GuardedOpenAI:
        """The wrapped client's `with_options(...)`, still guarded (same guard and runner)."""
        return GuardedOpenAI(
            self.client.with_options(**options),
            self.guard,
            identity=self.identity,
            runner=self.runner,
        )

    def close(self) -> None:
        """Close the wrapped client, the guard's backend and the guard's loop."""
        self.client.close()
        self.runner.close(self.guard.backend.close)

    def __enter__(self) -> GuardedOpenAI:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
