"""The LiteLLM guardrail's hooks in process (tests/test_litellm_gateway.py runs the real proxy).

The hooks get what LiteLLM's proxy hands them (the request dict, a
UserAPIKeyAuth, ModelResponse / ModelResponseStream objects) and answer what
it expects: the rewritten dict, an HTTPException, chunks, headers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth
from litellm.types.utils import ModelResponse, ModelResponseStream, Usage
from policy_core.primitives.redact import redact_text
from policy_integrations.gateways.guard import Guard
from policy_integrations.gateways.litellm_guardrail import (
    GuardrailSettings,
    LLMPolicyGuardrail,
    PolicyStreamDenied,
    identity_from_litellm,
)

# litellm's own types warn when pydantic builds their schema (not ours to fix).
pytestmark = pytest.mark.filterwarnings("ignore:Item .*ReadOnly. qualifier:UserWarning")

POLICY = """\
metadata: {id: unit}
rules:
  - id: deny-secret
    condition: "llm.prompt.contains('secret plan')"
    action: {decision: deny, reason: "no secret plans for {{ user.id }}"}
  - id: gold-only
    condition: "llm.model == 'gpt-4o' && team.tier != 'gold'"
    action:
      decision: modify
      reason: gpt-4o is for gold teams
      modifications: {llm.model: gpt-4o-mini, llm.max_tokens: 8}
  - id: review
    condition: "llm.prompt.contains('[review]')"
    action: {decision: warn, reason: "review this"}
  - id: stop-word
    phase: response
    condition: "response.text.contains('FORBIDDEN')"
    action: {decision: deny, reason: the answer says the word}
  - id: answer-pii
    phase: response
    condition: response.contains_pii
    action: {decision: warn, reason: answer redacted}
    obligations:
      - {type: redact, fields: [response.text], pattern: pii}
"""


@pytest.fixture
def guardrail(tmp_path: Path) -> LLMPolicyGuardrail:
    (tmp_path / "unit.yaml").write_text(POLICY)
    return LLMPolicyGuardrail(
        guardrail_name="llm-policy",
        event_hook=["pre_call", "post_call"],
        default_on=True,
        policy_dir=str(tmp_path),
        mask_request_content=False,  # one of LiteLLM's own keys: passed on, not ours
    )


def _key(**fields: Any) -> UserAPIKeyAuth:
    return UserAPIKeyAuth(**fields)


def _data(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": text}],
        "litellm_call_id": f"call-{abs(hash(text))}",
        "metadata": {"headers": {}},
        **extra,
    }


def test_settings_come_out_of_litellm_params_and_default_to_fail_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UNIT_SERVER", "http://127.0.0.1:9")
    monkeypatch.setenv("UNIT_TOKEN", "tok")
    params = {
        "policy_dir": "os.environ/UNIT_UNSET_DIR",
        "policy_server_url": "os.environ/UNIT_SERVER",
        "policy_server_token": "os.environ/UNIT_TOKEN",
        "on_flagged": "block",
    }
    settings = GuardrailSettings.pop_from(params)
    assert params == {"on_flagged": "block"}  # LiteLLM's keys stay for LiteLLM
    assert settings.backend == "remote"
    assert (settings.server_url, settings.server_token) == ("http://127.0.0.1:9", "tok")
    assert settings.policy_dir is None
    assert (settings.fail_mode, settings.deny_status) == ("closed", 400)
    for bad, message in [
        ({"policy_dir": "x", "fail_mode": "sometimes"}, "fail_mode"),
        ({"policy_dir": "x", "deny_status": 500}, "deny_status"),
        ({}, "needs policy_dir"),
        ({"policy_backend": "remote"}, "needs policy_server_url"),
    ]:
        with pytest.raises(ValueError, match=message):
            GuardrailSettings.pop_from(dict(bad))


def test_identity_from_the_litellm_key() -> None:
    key = _key(
        user_id="u-1",
        user_email="u1@example.com",
        user_role=LitellmUserRoles.INTERNAL_USER,
        team_id="t-9",
        team_alias="search",
        key_alias="search-prod",
        org_id="org-3",
        team_metadata={"llm_policy": {"team": {"tier": "silver", "budget": 5}}},
        metadata={"llm_policy": {"team": {"tier": "gold"}}, "tags": ["prod"]},
    )
    identity = identity_from_litellm(key, {"x-llm-policy-team": "spoofed"}, trust_headers=False)
    assert identity.user_id == "u-1"
    assert identity.email == "u1@example.com"
    assert identity.roles == ("internal_user",)
    assert (identity.team_id, identity.team_name) == ("t-9", "search")
    assert identity.key_id == "search-prod"
    assert identity.tags == ("prod",)
    assert identity.extra == {
        "metadata": {"org_id": "org-3"},
        "team": {"tier": "gold", "budget": 5},
    }
    master = identity_from_litellm(
        _key(user_id="default_user_id"),
        {"x-llm-policy-user": "claimed", "x-llm-policy-tier": "gold"},
        trust_headers=True,
    )
    assert (master.user_id, master.team_tier) == ("claimed", "gold")
    assert identity_from_litellm(_key(user_id="default_user_id")).user_id is None


async def test_a_deny_raises_litellms_block_with_our_reason_and_headers(
    guardrail: LLMPolicyGuardrail,
) -> None:
    data = _data("the secret plan", user="eve")
    with pytest.raises(HTTPException) as denied:
        await guardrail.async_pre_call_hook(_key(), None, data, "acompletion")
    assert denied.value.status_code == 400
    detail = denied.value.detail
    assert detail["reason"] == "no secret plans for eve"
    assert detail["decision_id"] == data["litellm_call_id"]
    assert detail["error"].startswith("llm-policy: no secret plans for eve (decision call-")
    headers = await guardrail.async_post_call_response_headers_hook(data, _key(), None)
    assert headers is not None
    assert headers["x-llm-policy-decision"] == "deny"
    assert headers["x-llm-policy-decision-id"] == data["litellm_call_id"]


async def test_a_modify_rewrites_the_request_litellm_sends(guardrail: LLMPolicyGuardrail) -> None:
    data = _data("[review] hello", max_tokens=400, stream=True)
    out = await guardrail.async_pre_call_hook(_key(), None, data, "acompletion")
    assert out is data
    assert (data["model"], data["max_tokens"]) == ("gpt-4o-mini", 8)
    assert data["stream_options"] == {"include_usage": True}  # to settle the stream's spend
    headers = await guardrail.async_post_call_response_headers_hook(data, _key(), None)
    assert headers is not None
    assert headers["x-llm-policy-decision"] == "modify"
    assert json.loads(headers["x-llm-policy-warnings"]) == ["review this"]
    gold = _data("hello", max_tokens=400)
    key = _key(metadata={"llm_policy": {"team": {"tier": "gold"}}})
    await guardrail.async_pre_call_hook(key, None, gold, "acompletion")
    assert (gold["model"], gold["max_tokens"]) == ("gpt-4o", 400)


async def test_other_call_types_pass_unjudged(guardrail: LLMPolicyGuardrail) -> None:
    data = {"model": "text-embedding-3-small", "input": ["the secret plan"]}
    assert await guardrail.async_pre_call_hook(_key(), None, data, "aembedding") is data
    assert await guardrail.async_post_call_response_headers_hook(data, _key(), None) is None


def _completion(text: str) -> ModelResponse:
    return ModelResponse(
        id="c1",
        model="gpt-4o",
        choices=[
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        usage=Usage(prompt_tokens=3, completion_tokens=9, total_tokens=12),
    )


async def test_a_completion_is_redacted_or_withheld(guardrail: LLMPolicyGuardrail) -> None:
    data = _data("hello there", model="gpt-4o-mini")
    await guardrail.async_pre_call_hook(_key(), None, data, "acompletion")
    answer = "mail me at joe@example.com"
    passed = await guardrail.async_post_call_success_hook(data, _key(), _completion(answer))
    assert passed.choices[0].message.content == redact_text(answer)
    headers = await guardrail.async_post_call_response_headers_hook(data, _key(), passed)
    assert headers is not None
    assert headers["x-llm-policy-response-decision"] == "warn"
    assert headers["x-llm-policy-response-decision-id"] == f"{data['litellm_call_id']}.response"

    data = _data("and again", model="gpt-4o-mini")
    await guardrail.async_pre_call_hook(_key(), None, data, "acompletion")
    with pytest.raises(HTTPException) as withheld:
        await guardrail.async_post_call_success_hook(data, _key(), _completion("FORBIDDEN"))
    assert withheld.value.detail["reason"] == "the answer says the word"
    assert withheld.value.detail["decision_id"] == f"{data['litellm_call_id']}.response"


def _chunks(text: str, size: int) -> list[ModelResponseStream]:
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    out = [
        ModelResponseStream(
            id="s1", model="gpt-4o-mini", choices=[{"index": 0, "delta": {"content": p}}]
        )
        for p in pieces
    ]
    out.append(
        ModelResponseStream(
            id="s1",
            model="gpt-4o-mini",
            choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}],
        )
    )
    return out


async def _aiter(items: list[ModelResponseStream]) -> AsyncIterator[ModelResponseStream]:
    for item in items:
        yield item


async def _streamed(guardrail: LLMPolicyGuardrail, text: str) -> tuple[list[str], Exception | None]:
    data = _data("stream it", model="gpt-4o-mini", stream=True)
    await guardrail.async_pre_call_hook(_key(), None, data, "acompletion")
    out: list[str] = []
    hook = guardrail.async_post_call_streaming_iterator_hook(_key(), _aiter(_chunks(text, 4)), data)
    try:
        async for chunk in hook:
            assert isinstance(chunk, ModelResponseStream)
            if chunk.choices and chunk.choices[0].delta.content:
                out.append(chunk.choices[0].delta.content)
    except PolicyStreamDenied as error:
        return out, error
    return out, None


async def test_a_stream_releases_judged_text_and_a_deny_ends_it(
    guardrail: LLMPolicyGuardrail,
) -> None:
    answer = "write to joe@example.com today"
    released, error = await _streamed(guardrail, answer)
    assert error is None
    assert "".join(released) == redact_text(answer)

    answer = "all fine until the FORBIDDEN word and more"
    released, error = await _streamed(guardrail, answer)
    assert isinstance(error, PolicyStreamDenied)
    assert "the answer says the word" in error.message
    assert error.status_code == 400
    text = "".join(released)
    assert "FORBIDDEN" not in text
    assert answer.startswith(text)


async def test_a_guard_can_be_given_and_fails_closed(tmp_path: Path) -> None:
    port_free = "http://127.0.0.1:9"  # discard port: nothing listens
    guardrail = LLMPolicyGuardrail(
        guard=Guard.remote(port_free, timeout=1.0),
        guardrail_name="llm-policy",
        event_hook="pre_call",
    )
    data = _data("hello")
    with pytest.raises(HTTPException) as denied:
        await guardrail.async_pre_call_hook(_key(), None, data, "acompletion")
    assert "failing closed" in denied.value.detail["reason"]
    assert "unreachable" in denied.value.detail["failure"]
    await guardrail.guard.backend.close()
