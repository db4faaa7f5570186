"""The Guard lifecycle with the engine embedded: streams, held chunks, settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from policy_core.language import load_policy_text
from policy_core.memory import MemoryUsageStore
from policy_core.primitives.costs import estimate_cost
from policy_integrations.gateways.guard import Guard, PolicyDenied, RemoteBackend
from policy_integrations.gateways.mapping import Identity, estimated_usage

POLICY = """
metadata: {id: answers}
rules:
  - id: no-keys
    phase: response
    condition: "response.text.matches('sk-[A-Za-z0-9]{32}')"
    action: {decision: deny, reason: The answer contains an API key}
  - id: redact-pii
    phase: response
    condition: response.contains_pii
    action: {decision: warn, reason: PII redacted}
    obligations: [{type: redact, fields: [response.text], pattern: pii}]
  - id: no-drop
    phase: response
    condition: "'drop_table' in response.tool_names"
    action: {decision: deny, reason: "no {{ response.tool_names }}"}
"""
KEY = "sk-" + "Zz09" * 8
REQUEST = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def guard() -> Guard:
    return Guard.embedded(load_policy_text(POLICY))


def chunks(
    pieces: list[str], *, calls: list[dict[str, Any]] | None = None, usage: bool = True
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "id": "c",
            "model": "gpt-4o",
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
    ]
    out += [
        {
            "id": "c",
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}],
        }
        for p in pieces
    ]
    if calls:
        out.append(
            {
                "id": "c",
                "choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}],
            }
        )
    out.append({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        out.append(
            {"id": "c", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}}
        )
    return out


async def source(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


async def run_stream(
    g: Guard, items: list[dict[str, Any]], request: dict[str, Any] = REQUEST
) -> tuple[list[dict[str, Any]], PolicyDenied | None]:
    precall = (await g.before(request, Identity(user_id="u"))).check()
    out: list[dict[str, Any]] = []
    try:
        async for chunk in g.stream(precall, source(items)):
            out.append(chunk)
    except PolicyDenied as exc:
        return out, exc
    return out, None


def text_of(out: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in out if c.get("choices"))


def whole(text: str) -> dict[str, Any]:
    return {
        "id": "c",
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7},
    }


PIECES = st.lists(
    st.sampled_from(["lorem ipsum ", "bob@example.com", " ", KEY, "x" * 40, "call 555", "\n", "é"]),
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=PIECES, cuts=st.lists(st.integers(min_value=1, max_value=600), max_size=12))
def test_a_stream_passes_on_what_the_whole_completion_passes_on(
    parts: list[str], cuts: list[int]
) -> None:
    """However the text is cut, the stream releases the text `after` gives, or denies as it does."""
    text = "".join(parts)
    bounds = sorted({c for c in cuts if c < len(text)})
    pieces = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]

    async def both() -> None:
        g = guard()
        precall = await g.before({**REQUEST, "stream": False}, Identity(user_id="u"))
        post = await g.after(precall, whole(text))
        out, denied = await run_stream(g, chunks(pieces))
        if post.denied:
            assert denied is not None
            assert denied.reason == post.decision.reason
            assert KEY not in text_of(out)
            assert denied.released == text_of(out)
        else:
            assert denied is None
            assert text_of(out) == post.completion["choices"][0]["message"]["content"]

    asyncio.run(both())


async def test_tool_calls_and_the_finish_wait_for_the_verdict() -> None:
    calls = [
        {
            "index": 0,
            "id": "t",
            "type": "function",
            "function": {"name": "drop_table", "arguments": "{}"},
        }
    ]
    out, denied = await run_stream(guard(), chunks(["fine text"], calls=calls))
    assert denied is not None
    assert denied.reason == 'no ["drop_table"]'
    assert not any(c["choices"] and c["choices"][0]["delta"].get("tool_calls") for c in out)
    assert not any(c["choices"] and c["choices"][0].get("finish_reason") for c in out)
    calls[0]["function"]["name"] = "lookup"
    out, denied = await run_stream(guard(), chunks(["fine text"], calls=calls))
    assert denied is None
    tail = [c["choices"][0] for c in out[-2:]]
    assert tail[0]["delta"]["tool_calls"][0]["function"]["name"] == "lookup"
    assert tail[1]["finish_reason"] == "stop"
    assert text_of(out) == "fine text"


async def test_the_usage_chunk_goes_out_only_when_asked_for() -> None:
    g = guard()
    precall = await g.before(REQUEST, None)
    assert precall.request["stream_options"] == {"include_usage": True}
    assert not precall.modified  # asking for usage is not a policy's rewrite
    out, _ = await run_stream(g, chunks(["a"]))
    assert all(c["choices"] for c in out)
    asked = {**REQUEST, "stream_options": {"include_usage": True}}
    out, _ = await run_stream(g, chunks(["a"]), asked)
    assert out[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 7}


async def test_policy_denied_carries_the_decision() -> None:
    g = Guard.embedded(
        load_policy_text(
            "metadata: {id: p}\nrules:\n  - id: r\n    action: {decision: deny, reason: no}\n"
        )
    )
    request = {**REQUEST, "stream": False}
    precall = await g.before(request, None, request_id="req-1")
    with pytest.raises(PolicyDenied) as denied:
        precall.check()
    assert denied.value.decision_id == "req-1"
    assert denied.value.decision.matched_rules == ("p/r",)
    assert denied.value.reasons == ("no",)
    assert str(denied.value) == f"no (decision req-1, policy set {denied.value.policy_set})"
    assert precall.request == request  # a deny rewrites nothing


def test_from_config() -> None:
    remote = Guard.from_config(
        {"mode": "remote", "url": "http://127.0.0.1:1/", "token": "t", "fail_mode": "open"}
    )
    assert isinstance(remote.backend, RemoteBackend)
    assert remote.backend.url == "http://127.0.0.1:1"
    assert remote.fail_mode == "open"
    embedded = Guard.from_config({"policies": []})
    assert (embedded.backend.name, embedded.fail_mode) == ("embedded", "closed")
    with pytest.raises(ValueError, match="needs the `url`"):
        Guard.from_config({"mode": "remote"})
    with pytest.raises(ValueError, match="needs `policies`"):
        Guard.from_config({"mode": "embedded"})
    with pytest.raises(ValueError, match="fail_mode must be"):
        Guard.from_config({"policies": [], "fail_mode": "maybe"})
    with pytest.raises(ValueError, match="mode must be"):
        Guard.from_config({"mode": "grpc"})


BUDGET = """
metadata: {id: budget}
config: {cache_ttl_seconds: 0}
rules:
  - id: cap
    condition: "budget.spent('team:' + team.id, 'day') >= 100"
    action: {decision: deny, reason: spent}
"""


async def test_a_stream_cut_by_a_deny_is_still_billed() -> None:
    """No usage chunk comes after the cut: the reservation is settled at the estimate."""
    store = MemoryUsageStore()
    g = Guard.embedded([*load_policy_text(POLICY), *load_policy_text(BUDGET)], usage=store)
    precall = (await g.before(REQUEST, Identity(user_id="u", team_id="t"))).check()
    assert precall.reservation is not None
    received = "lorem ipsum " * 60 + KEY + " tail"
    pieces = [received[i : i + 7] for i in range(0, len(received), 7)]
    with pytest.raises(PolicyDenied):
        async for _ in g.stream(precall, source(chunks(pieces, usage=False))):
            pass
    fact = ("budget.spent", "team:t", "day")
    spent = (await store.fetch([fact], record=False))[fact]
    assert spent > 0
    assert await store.settle(precall.reservation.id, 0.0) is None  # already settled
    # Settled at the estimate of what was read: at least the text up to the key.
    low = estimated_usage(precall.context, received[: received.index(KEY) + len(KEY)])
    high = estimated_usage(precall.context, received)
    cost_low = estimate_cost("gpt-4o", low["prompt_tokens"], low["completion_tokens"])
    cost_high = estimate_cost("gpt-4o", high["prompt_tokens"], high["completion_tokens"])
    assert cost_low is not None
    assert cost_high is not None
    assert cost_low <= spent <= cost_high


async def test_a_completion_without_usage_is_settled_at_the_estimate() -> None:
    store = MemoryUsageStore()
    g = Guard.embedded(load_policy_text(BUDGET), usage=store)
    precall = (await g.before({**REQUEST, "stream": False}, Identity(team_id="t2"))).check()
    completion = whole("a short answer")
    del completion["usage"]
    post = await g.after(precall, completion)
    assert post.usage_estimated
    assert post.response["usage"] == estimated_usage(precall.context, "a short answer")
    fact = ("budget.spent", "team:t2", "day")
    assert (await store.fetch([fact], record=False))[fact] == pytest.approx(post.cost)
