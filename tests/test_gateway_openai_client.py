"""Issue 15 end to end: the guarded OpenAI client in front of the fake upstream, on loopback.

Every scenario of the issue's acceptance runs with the stock `openai` client
(async and sync) wrapped by `GuardedAsyncOpenAI` / `GuardedOpenAI`, the
policies judged by the engine embedded in this process and by a real
llm-policy HTTP server (the app `llm-policy serve` runs, under uvicorn in a
thread of this process, memory deployment, its policies seeded from a
directory): a denied request never reaches the upstream and the caller sees
our reason; a modify reaches it rewritten; PII in a completion comes back
redacted, streamed and not; a streamed completion that trips a deny rule is
cut before the offending span; spend is settled from the upstream's usage
and the budget cap then denies.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from policy_cli.testing import ThreadedHttpServer, free_port, http_app, memory_settings
from policy_core.memory import MemoryUsageStore
from policy_http.testing import make_token
from policy_integrations.gateways.fake_upstream import Reply, ThreadedFakeUpstream
from policy_integrations.gateways.guard import Guard, PolicyDenied
from policy_integrations.gateways.mapping import Identity
from policy_integrations.gateways.openai_client import GuardedAsyncOpenAI, GuardedOpenAI

POLICIES = {
    "requests.yaml": """\
metadata: {id: gateway-requests, priority: 10}
rules:
  - id: no-forbidden
    condition: "llm.prompt.contains('forbidden')"
    action: {decision: deny, reason: "{{ user.id }} asked for something forbidden"}
  - id: free-tier-cap
    condition: "team.tier == 'free' && (llm.max_tokens > 100 || llm.model == 'gpt-4o')"
    action:
      decision: modify
      reason: Free tier runs gpt-4o-mini with at most 100 tokens
      modifications: {llm.max_tokens: 100, llm.model: gpt-4o-mini}
  - id: redact-request-pii
    condition: "llm.contains_pii"
    action: {decision: modify, reason: PII is redacted before the request leaves}
    obligations:
      - {type: redact, fields: [llm.messages], pattern: pii}
  - id: polite
    condition: "llm.prompt.contains('please')"
    action: {decision: warn, reason: "a polite request from {{ user.id }}"}
""",
    "budget.yaml": """\
metadata: {id: gateway-budget, priority: 5}
config: {cache_ttl_seconds: 0}
rules:
  - id: team-daily-budget
    condition: "has(team.daily_budget_usd) && budget.spent('team:' + team.id, 'day') >= team.daily_budget_usd"
    action: {decision: deny, reason: "team {{ team.id }} has spent its daily budget"}
""",
    "responses.yaml": """\
metadata: {id: gateway-responses}
rules:
  - id: no-keys
    phase: response
    condition: "response.text.matches('sk-[A-Za-z0-9]{32}')"
    action: {decision: deny, reason: The answer contains an API key}
  - id: redact-pii
    phase: response
    condition: response.contains_pii
    action: {decision: warn, reason: "PII in the answer was redacted"}
    obligations:
      - {type: redact, fields: [response.text], pattern: pii}
""",
}
KEY = "sk-" + "A1b2C3d4" * 4
_teams = itertools.count()


@pytest.fixture(scope="module")
def policies_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("gateway-policies")
    for name, text in POLICIES.items():
        (where / name).write_text(text)
    return where


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedFakeUpstream]:
    with ThreadedFakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def policy_server(policies_dir: Path) -> Iterator[ThreadedHttpServer]:
    app = http_app(memory_settings(seed_policies=str(policies_dir)))
    with ThreadedHttpServer(app) as server:
        yield server


def _token() -> str:
    return make_token(roles=["evaluator"], sub="gateway")


GuardFactory = Callable[[], Guard]


@pytest.fixture(params=["embedded", "remote"])
def backend(request: pytest.FixtureRequest, policies_dir: Path) -> tuple[str, GuardFactory]:
    if request.param == "embedded":
        return "embedded", lambda: Guard.embedded(policies_dir)
    server: ThreadedHttpServer = request.getfixturevalue("policy_server")
    # A small stream window, so that a streamed answer is released before it ends.
    return "remote", lambda: Guard.remote(server.url, token=_token(), stream_window=600)


class Caller:
    """One guarded client (async, or sync driven from a worker thread), one facade."""

    def __init__(self, kind: str, guard: Guard, upstream: ThreadedFakeUpstream) -> None:
        self.kind = kind
        if kind == "async":
            self.aclient: GuardedAsyncOpenAI = GuardedAsyncOpenAI(
                openai.AsyncOpenAI(base_url=upstream.base_url, api_key="fake", max_retries=0),
                guard,
            )
        else:
            self.sclient: GuardedOpenAI = GuardedOpenAI(
                openai.OpenAI(base_url=upstream.base_url, api_key="fake", max_retries=0), guard
            )

    async def create(self, **kwargs: Any) -> Any:
        if self.kind == "async":
            return await self.aclient.chat.completions.create(**kwargs)
        return await asyncio.to_thread(lambda: self.sclient.chat.completions.create(**kwargs))

    async def stream(self, **kwargs: Any) -> tuple[str, Any, PolicyDenied | None]:
        """The text streamed, the stream object, and the PolicyDenied that cut it (or None)."""
        parts: list[str] = []
        if self.kind == "async":
            stream = await self.aclient.chat.completions.create(stream=True, **kwargs)
            try:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
            except PolicyDenied as exc:
                return "".join(parts), stream, exc
            return "".join(parts), stream, None

        def run() -> tuple[str, Any, PolicyDenied | None]:
            stream = self.sclient.chat.completions.create(stream=True, **kwargs)
            try:
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
            except PolicyDenied as exc:
                return "".join(parts), stream, exc
            return "".join(parts), stream, None

        return await asyncio.to_thread(run)

    async def close(self) -> None:
        if self.kind == "async":
            await self.aclient.close()
        else:
            await asyncio.to_thread(self.sclient.close)


@pytest.fixture(params=["async", "sync"])
async def caller(
    request: pytest.FixtureRequest,
    backend: tuple[str, GuardFactory],
    upstream: ThreadedFakeUpstream,
) -> AsyncIterator[Caller]:
    upstream.clear()
    upstream.reply = Reply()
    one = Caller(request.param, backend[1](), upstream)
    yield one
    await one.close()


def who(tier: str = "pro", **extra: Any) -> Identity:
    team = f"team-{next(_teams)}"
    return Identity(user_id="u-1", team_id=team, team_tier=tier, extra={"team": extra})


def ask(text: str, **kwargs: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **kwargs}


async def test_a_denied_request_never_reaches_the_upstream(
    caller: Caller, upstream: ThreadedFakeUpstream
) -> None:
    for stream in (False, True):
        call = caller.stream if stream else caller.create
        with pytest.raises(PolicyDenied) as denied:
            await call(identity=who(), **ask("something forbidden"))
        assert denied.value.reason == "u-1 asked for something forbidden"
        assert denied.value.decision.matched_rules == ("gateway-requests/no-forbidden",)
        assert denied.value.policy_set.startswith("sha256:")
        assert len(denied.value.decision_id) == 32
    assert upstream.chat_requests == []


async def test_a_modify_reaches_the_upstream_rewritten(
    caller: Caller, upstream: ThreadedFakeUpstream
) -> None:
    result = await caller.create(
        identity=who("free"), **ask("mail bob@example.com a poem", max_tokens=4000)
    )
    [sent] = upstream.chat_requests
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["max_tokens"] == 100
    assert sent.last_user_text() == "mail [REDACTED:email] a poem"
    info = result.llm_policy
    assert info.modified
    assert info.decision.decision == "modify"
    assert info.request["model"] == "gpt-4o-mini"
    assert result.choices[0].message.content == "Hello from the fake upstream."
    assert "llm_policy" not in result.model_dump()


async def test_a_warning_passes_with_the_warnings_on_the_result(
    caller: Caller, upstream: ThreadedFakeUpstream
) -> None:
    result = await caller.create(identity=who(), **ask("a haiku please"))
    assert result.llm_policy.warnings == ("a polite request from u-1",)
    assert result.llm_policy.response_decision_id == result.llm_policy.decision_id + ".response"
    _, stream, cut = await caller.stream(identity=who(), **ask("a haiku please"))
    assert cut is None
    assert stream.llm_policy.warnings == ("a polite request from u-1",)
    assert len(upstream.chat_requests) == 2


async def test_the_identity_comes_from_headers(
    caller: Caller, upstream: ThreadedFakeUpstream
) -> None:
    headers = {"x-llm-policy-user": "u-hdr", "x-llm-policy-tier": "pro"}
    with pytest.raises(PolicyDenied, match="u-hdr asked for something forbidden"):
        await caller.create(extra_headers=headers, **ask("forbidden"))
    await caller.create(extra_headers=headers, **ask("fine"))
    [sent] = upstream.chat_requests
    assert not any(k.lower().startswith("x-llm-policy-") for k in sent.headers)


PII_ANSWER = "Write to alice@example.org or call the office; thanks."


async def test_pii_in_a_completion_comes_back_redacted(
    caller: Caller, upstream: ThreadedFakeUpstream
) -> None:
    upstream.reply = Reply(text=PII_ANSWER, chunk_size=3)
    result = await caller.create(identity=who(), **ask("contact?"))
    expected = "Write to [REDACTED:email] or call the office; thanks."
    assert result.choices[0].message.content == expected
    assert result.llm_policy.warnings == ("PII in the answer was redacted",)
    text, stream, cut = await caller.stream(identity=who(), **ask("contact?"))
    assert cut is None
    assert text == expected
    assert stream.llm_policy.response_decision.decision == "warn"
    assert "alice" not in text


async def test_a_streamed_completion_that_trips_a_deny_is_cut_before_the_span(
    caller: Caller, upstream: ThreadedFakeUpstream
) -> None:
    preamble = "Sure, here is some harmless context. " * 30
    upstream.reply = Reply(text=f"{preamble}The key is {KEY} and more after it.", chunk_size=5)
    text, _, cut = await caller.stream(identity=who(), **ask("the key?"))
    assert cut is not None
    assert cut.reason == "The answer contains an API key"
    assert cut.phase == "response"
    assert cut.released == text
    assert "sk-" not in text
    assert (preamble + "The key is ").startswith(text)
    assert len(text) > 0  # the harmless part went out before the deny
    with pytest.raises(PolicyDenied, match="API key"):
        await caller.create(identity=who(), **ask("the key?"))


async def test_spend_is_settled_from_the_usage_and_the_cap_then_denies(
    caller: Caller, upstream: ThreadedFakeUpstream
) -> None:
    # gpt-4o at 2.50 / 10.00 USD per million tokens: 2,000 in, 20,000 out = 0.205 USD.
    upstream.reply = Reply(prompt_tokens=2_000, completion_tokens=20_000)
    for stream in (False, True):
        identity = who(daily_budget_usd=0.1)
        if stream:
            _, first, cut = await caller.stream(identity=identity, **ask("hello"))
            assert cut is None
        else:
            first = await caller.create(identity=identity, **ask("hello"))
        assert first.llm_policy.decision.reservation is not None
        with pytest.raises(PolicyDenied, match=f"team {identity.team_id} has spent"):
            await caller.create(identity=identity, **ask("hello again"))
    # The stream asked the upstream for its usage chunk, which the caller did not ask for.
    streamed = [r for r in upstream.chat_requests if r.body.get("stream")]
    assert streamed[0].body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
async def test_an_unreachable_server_fails_closed_by_default(
    upstream: ThreadedFakeUpstream, stream: bool
) -> None:
    upstream.clear()
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    caller = Caller("async", Guard.remote(nowhere, token=_token(), timeout=2), upstream)
    try:
        call = caller.stream if stream else caller.create
        with pytest.raises(PolicyDenied) as denied:
            await call(identity=who(), **ask("hello"))
    finally:
        await caller.close()
    assert denied.value.reason.startswith("policy check failed (failing closed): ")
    assert f"the policy server at {nowhere} is unreachable" in denied.value.reason
    assert upstream.chat_requests == []


async def test_fail_open_allows_with_a_warning(upstream: ThreadedFakeUpstream) -> None:
    upstream.clear()
    upstream.reply = Reply(text=PII_ANSWER)
    nowhere = f"http://127.0.0.1:{free_port()}"
    guard = Guard.remote(nowhere, token=_token(), fail_mode="open")
    caller = Caller("async", guard, upstream)
    try:
        result = await caller.create(identity=who(), **ask("something forbidden"))
        text, stream, cut = await caller.stream(identity=who(), **ask("again"))
    finally:
        await caller.close()
    # Nothing judged the answer: it passes unredacted, and every phase says why.
    assert result.choices[0].message.content == PII_ANSWER
    [first, second] = result.llm_policy.warnings
    assert first.startswith("policy check skipped (failing open): the policy server at")
    assert second == first
    assert (text, cut) == (PII_ANSWER, None)
    assert stream.llm_policy.warnings[0].startswith("policy check skipped (failing open)")
    assert len(upstream.chat_requests) == 2


async def test_a_refused_token_denies_even_when_failing_open(
    policy_server: ThreadedHttpServer, upstream: ThreadedFakeUpstream
) -> None:
    upstream.clear()
    auditor = make_token(roles=["auditor"], sub="gateway")  # no `evaluate` permission
    guard = Guard.remote(policy_server.url, token=auditor, fail_mode="open")
    caller = Caller("async", guard, upstream)
    try:
        with pytest.raises(PolicyDenied, match="refused /api/v1/evaluate with 403"):
            await caller.create(identity=who(), **ask("hello"))
    finally:
        await caller.close()
    assert upstream.chat_requests == []


async def test_an_upstream_failure_releases_the_reservation(
    upstream: ThreadedFakeUpstream, policies_dir: Path
) -> None:
    upstream.clear()
    upstream.reply = Reply(status=500)
    store = MemoryUsageStore()
    guard = Guard.embedded(policies_dir, usage=store)
    caller = Caller("async", guard, upstream)
    identity = who(daily_budget_usd=0.1)
    try:
        with pytest.raises(openai.InternalServerError):
            await caller.create(identity=identity, **ask("hello", max_tokens=100_000))
        precall = await guard.before(ask("hello"), identity)
    finally:
        await caller.close()
    # Nothing is held for the failed call: the next request's reservation is the only one.
    assert precall.reservation is not None
    fact = ("budget.spent", f"team:{identity.team_id}", "day")
    spent = await store.fetch([fact], record=False)
    assert spent[fact] == pytest.approx(precall.reservation.amount)


STREAM_PIECES = st.lists(
    st.sampled_from(["lorem ipsum dolor ", "bob@example.com", " ", KEY, "y" * 50, "\n", "é"]),
    min_size=1,
    max_size=80,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=STREAM_PIECES, size=st.integers(min_value=1, max_value=40))
def test_a_remote_stream_passes_on_what_the_whole_completion_passes_on(
    policy_server: ThreadedHttpServer, parts: list[str], size: int
) -> None:
    """The remote stream (judged every 600 characters) against the same server's whole answer.

    600 is over the stream judge's own window for these policies (508, twice
    the longest PII span): the window `docs/gateways.md` asks for.
    """
    text = "".join(parts)
    pieces = [text[i : i + size] for i in range(0, len(text), size)]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c",
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    async def source() -> AsyncIterator[dict[str, Any]]:
        for piece in pieces:
            yield chunk({"content": piece})
        yield chunk({}, "stop")

    async def both() -> None:
        guard = Guard.remote(policy_server.url, token=_token(), stream_window=600)
        try:
            precall = (await guard.before(ask("hi"), who())).check()
            completion = {
                "model": "gpt-4o",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            }
            post = await guard.after(precall, completion)
            out: list[str] = []
            denied = None
            try:
                async for c in guard.stream(precall, source()):
                    out.append(c["choices"][0]["delta"].get("content") or "")
            except PolicyDenied as exc:
                denied = exc
        finally:
            await guard.backend.close()
        if post.denied:
            assert denied is not None
            assert KEY not in "".join(out)
        else:
            assert denied is None
            assert "".join(out) == post.completion["choices"][0]["message"]["content"]

    asyncio.run(both())


async def test_with_options_stays_guarded_and_raw_responses_are_refused(
    upstream: ThreadedFakeUpstream, policies_dir: Path
) -> None:
    upstream.clear()
    caller = Caller("async", Guard.embedded(policies_dir), upstream)
    sync = Caller("sync", Guard.embedded(policies_dir), upstream)
    try:
        for client in (caller.aclient, sync.sclient):
            derived = client.with_options(timeout=5)
            with pytest.raises(AttributeError, match="is not guarded"):
                _ = client.chat.completions.with_raw_response
            with pytest.raises(AttributeError, match="is not guarded"):
                _ = client.with_streaming_response
        with pytest.raises(PolicyDenied, match="forbidden"):
            await caller.aclient.with_options(timeout=5).chat.completions.create(
                identity=who(), **ask("forbidden")
            )
        with pytest.raises(PolicyDenied, match="forbidden"):
            await asyncio.to_thread(
                lambda: derived.chat.completions.create(identity=who(), **ask("forbidden"))
            )
    finally:
        await caller.close()
        await sync.close()
    assert upstream.chat_requests == []


async def test_a_remote_window_shorter_than_a_pii_span_fails_safe(
    policy_server: ThreadedHttpServer,
) -> None:
    """An e-mail address longer than the window: its start went out before it was PII.

    The final decision redacts text already released; the guard stops the
    stream there (a deny) rather than pass on the rest of the address.
    """
    local = "y" * 90
    text = "lorem ipsum " * 10 + local + "@example.com and more"
    guard = Guard.remote(policy_server.url, token=_token(), stream_window=64)

    async def source() -> AsyncIterator[dict[str, Any]]:
        for i in range(0, len(text), 5):
            yield {
                "model": "gpt-4o",
                "choices": [{"index": 0, "delta": {"content": text[i : i + 5]}}],
            }

    out: list[str] = []
    try:
        precall = (await guard.before(ask("hi"), who())).check()

        async def collect() -> None:
            async for chunk in guard.stream(precall, source()):
                out.append(chunk["choices"][0]["delta"]["content"])

        with pytest.raises(PolicyDenied, match="changed text already released"):
            await collect()
    finally:
        await guard.backend.close()
    released = "".join(out)
    assert "y" in released  # the address's start went out before it was one
    assert "@example.com" not in released


async def test_a_gateway_settles_at_its_own_price(backend: tuple[str, GuardFactory]) -> None:
    """Guard.settle: the reservation replaced by the gateway's price, once (then 404 / unknown)."""
    guard = backend[1]()
    identity = who(daily_budget_usd=1.0)
    try:
        precall = (await guard.before(ask("hello"), identity)).check()
        assert precall.reservation is not None
        assert await guard.settle(precall, 2.0) is True
        assert await guard.settle(precall, 2.0) is False
        with pytest.raises(PolicyDenied, match=f"team {identity.team_id} has spent"):
            (await guard.before(ask("hello"), identity)).check()
    finally:
        await guard.backend.close()
