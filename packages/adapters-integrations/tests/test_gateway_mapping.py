"""The gateways' context mapping (policy_integrations.gateways.mapping), pure functions."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings, strategies as st
from policy_core.engine import PolicyEngine
from policy_core.language import load_policy_text
from policy_core.model import Decision, RedactObligation
from policy_integrations.gateways.mapping import (
    Identity,
    StreamAccumulator,
    apply_request_decision,
    apply_response_decision,
    identity_from_headers,
    request_context,
    response_section,
)

REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "mail bob@example.com"}]},
    ],
    "max_tokens": 500,
    "temperature": 0.2,
    "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
    "user": "end-user-7",
    "metadata": {"trace": "abc"},
    "stream": True,
}
WHO = Identity(
    user_id="u1",
    roles=("analyst",),
    permissions=("llm.access",),
    team_id="t1",
    team_tier="pro",
    project_id="p1",
    environment="production",
    key_id="k-9",
    extra={"team": {"monthly_budget_usd": 50}},
)


def test_request_context_paths() -> None:
    before = copy.deepcopy(REQUEST)
    ctx = request_context(REQUEST, WHO, request_id="r-1")
    assert before == REQUEST  # not mutated
    llm = ctx["llm"]
    assert llm["provider"] == "openai"
    assert llm["model"] == "gpt-4o"
    assert llm["prompt"] == "mail bob@example.com"
    assert [m["role"] for m in llm["messages"]] == ["system", "user", "assistant", "user"]
    assert llm["max_tokens"] == 500
    assert llm["temperature"] == 0.2
    assert llm["functions"] == [{"name": "lookup", "parameters": {}}]
    assert llm["stream"] is True
    assert llm["estimated_tokens"] > 0
    assert ctx["user"] == {
        "id": "u1",
        "roles": ["analyst"],
        "permissions": ["llm.access"],
        "team": "t1",
    }
    assert ctx["team"] == {"id": "t1", "tier": "pro", "monthly_budget_usd": 50}
    assert ctx["project"] == {"id": "p1", "environment": "production"}
    assert ctx["request"] == {"id": "r-1"}
    assert ctx["metadata"] == {"trace": "abc", "key_id": "k-9"}


def test_request_user_is_the_fallback_user_id_and_max_completion_tokens_wins() -> None:
    ctx = request_context(
        {"model": "m", "messages": [], "user": "end-user", "max_completion_tokens": 9}, None
    )
    assert ctx["user"]["id"] == "end-user"
    assert ctx["llm"]["max_tokens"] == 9
    assert "prompt" not in ctx["llm"]


def test_policies_read_the_mapped_context() -> None:
    """The mapping feeds real policies: the paths they name are the ones it fills."""
    policy = load_policy_text(
        """
metadata: {id: p}
rules:
  - id: pro-only
    condition: "team.tier != 'pro' && llm.model == 'gpt-4o'"
    action: {decision: deny, reason: "{{ user.id }} needs pro"}
  - id: cap
    condition: "llm.max_tokens > 100 && project.environment == 'production'"
    action: {decision: modify, modifications: {llm.max_tokens: 100, llm.model: gpt-4o-mini}}
  - id: pii
    condition: "llm.contains_pii"
    action: {decision: modify}
    obligations: [{type: redact, fields: [llm.prompt], pattern: pii}]
"""
    )
    engine = PolicyEngine(policy)
    decision = engine.evaluate(request_context(REQUEST, WHO))
    assert decision.decision == "modify"
    sent = apply_request_decision(REQUEST, decision)
    assert sent["model"] == "gpt-4o-mini"
    assert sent["max_tokens"] == 100
    assert sent["messages"][3]["content"] == [{"type": "text", "text": "mail [REDACTED:email]"}]
    assert sent["messages"][1]["content"] == "first question"
    free = Identity(user_id="u2", team_tier="free")
    denied = engine.evaluate(request_context(REQUEST, free))
    assert (denied.decision, denied.reason) == ("deny", "u2 needs pro")
    assert apply_request_decision(REQUEST, denied) == REQUEST


def test_apply_modifications_and_removals() -> None:
    request = {
        "model": "a",
        "messages": [{"role": "user", "content": "x"}],
        "max_completion_tokens": 9,
    }
    decision = Decision(
        decision="modify",
        allowed=True,
        modifications={
            "llm.max_tokens": 5,
            "llm.temperature": None,
            "llm.prompt": "y",
            "metadata.flag": True,
            "llm.functions": [{"name": "f"}],
        },
    )
    out = apply_request_decision(request, decision)
    assert out["max_completion_tokens"] == 5
    assert "max_tokens" not in out
    assert out["messages"] == [{"role": "user", "content": "y"}]
    assert out["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert request["messages"] == [{"role": "user", "content": "x"}]  # not mutated
    gone = apply_request_decision(
        request, Decision(decision="modify", allowed=True, modifications={"llm.max_tokens": None})
    )
    assert "max_completion_tokens" not in gone
    every = Decision(
        decision="warn",
        allowed=True,
        obligations=(RedactObligation(fields=("llm.messages",), pattern="all"),),
    )
    assert apply_request_decision(request, every)["messages"] == [
        {"role": "user", "content": "[REDACTED]"}
    ]


COMPLETION: dict[str, Any] = {
    "id": "c1",
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "hello bob@example.com",
                "tool_calls": [
                    {
                        "id": "t",
                        "type": "function",
                        "function": {"name": "drop_table", "arguments": '{"t": "x"}'},
                    },
                    {
                        "id": "u",
                        "type": "function",
                        "function": {"name": "bad", "arguments": "not json"},
                    },
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}


def test_response_section() -> None:
    assert response_section(COMPLETION) == {
        "text": "hello bob@example.com",
        "finish_reason": "tool_calls",
        "model": "gpt-4o-mini",
        "tool_calls": [
            {"name": "drop_table", "arguments": {"t": "x"}},
            {"name": "bad", "arguments": {"_raw": "not json"}},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    assert response_section({}) == {"text": "", "tool_calls": []}


def test_apply_response_decision() -> None:
    decision = Decision(
        decision="warn", allowed=True, modifications={"response.text": "hello [REDACTED:email]"}
    )
    out = apply_response_decision(COMPLETION, decision)
    assert out["choices"][0]["message"]["content"] == "hello [REDACTED:email]"
    assert COMPLETION["choices"][0]["message"]["content"] == "hello bob@example.com"
    same = apply_response_decision(COMPLETION, Decision(decision="allow", allowed=True))
    assert same == COMPLETION


def _chunks(text: str, cuts: list[int], calls: list[tuple[str, str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    ]
    start = 0
    for cut in [*sorted(cuts), len(text)]:
        if cut > start:
            out.append(
                {"model": "m", "choices": [{"index": 0, "delta": {"content": text[start:cut]}}]}
            )
            start = cut
    for i, (name, args) in enumerate(calls):
        half = len(args) // 2
        out.append(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {"index": i, "function": {"name": name, "arguments": args[:half]}}
                            ]
                        },
                    }
                ]
            }
        )
        out.append(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]
                        },
                    }
                ]
            }
        )
    out.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    out.append({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    return out


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=8),
    calls=st.lists(
        st.tuples(
            st.sampled_from(["lookup", "drop_table"]),
            st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(json.dumps),
        ),
        max_size=3,
    ),
)
def test_stream_accumulator_matches_the_whole_completion(
    text: str, cuts: list[int], calls: list[tuple[str, str]]
) -> None:
    """However a completion is cut into chunks, the accumulated response equals the whole one's."""
    acc = StreamAccumulator()
    cuts = [c for c in cuts if c <= len(text)]
    got = "".join(acc.add(chunk) for chunk in _chunks(text, cuts, calls))
    whole = {
        "model": "m",
        "choices": [
            {
                "message": {
                    "content": text,
                    "tool_calls": [{"function": {"name": n, "arguments": a}} for n, a in calls],
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2},
    }
    expected = response_section(whole)
    assert got == expected["text"]
    assert acc.tool_calls == expected["tool_calls"]
    assert (acc.finish_reason, acc.model, acc.usage) == ("stop", "m", expected["usage"])


def test_identity_from_headers() -> None:
    who = identity_from_headers(
        {
            "X-LLM-Policy-User": "u1",
            "x-llm-policy-team": "t1",
            "x-llm-policy-tier": "free",
            "x-llm-policy-roles": "a, b",
            "x-llm-policy-mfa": "true",
            "x-llm-policy-key-id": "k1",
            "authorization": "Bearer ignored",
        }
    )
    assert who == Identity(
        user_id="u1",
        team_id="t1",
        team_tier="free",
        roles=("a", "b"),
        mfa_verified=True,
        key_id="k1",
    )


@settings(max_examples=100, deadline=None)
@given(
    model=st.text(min_size=1, max_size=10),
    max_tokens=st.integers(min_value=1, max_value=10_000),
    cap=st.integers(min_value=1, max_value=10_000),
)
def test_a_modify_of_the_context_roundtrips_through_the_request(
    model: str, max_tokens: int, cap: int
) -> None:
    """Mapping the rewritten request gives the context the modifications describe."""
    request = {
        "model": "orig",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
    }
    decision = Decision(
        decision="modify", allowed=True, modifications={"llm.model": model, "llm.max_tokens": cap}
    )
    ctx = request_context(apply_request_decision(request, decision))
    assert (ctx["llm"]["model"], ctx["llm"]["max_tokens"]) == (model, cap)
