"""The LiteLLM proxy guardrail (docs/gateways.md, "LiteLLM proxy guardrail").

`LLMPolicyGuardrail` is a `CustomGuardrail` that LiteLLM's proxy builds from
its config.yaml `guardrails:` entry (`guardrail:
policy_integrations.gateways.litellm_guardrail.LLMPolicyGuardrail`). Our
settings sit next to LiteLLM's in `litellm_params` (see `GuardrailSettings`).
Every call goes through one `Guard` (gateways/guard.py), so the mapping, the
stream judge and the spend settlement are the ones the OpenAI client uses:

- pre_call (`async_pre_call_hook`): the request-phase decision. A deny raises
  LiteLLM's block (an `HTTPException`, status `deny_status`, our reason as
  the error message); a modify rewrites the request LiteLLM sends (model,
  max_tokens, messages, tools); a warn passes.
- during_call (`async_moderation_hook`): the same decision, run while the
  model is called; a deny still fails the call, a modify cannot rewrite it.
- post_call (`async_post_call_success_hook`): the response-phase decision on
  the completion (redactions applied to the text, a deny withholds it) and
  the reservation settled from the completion's usage;
  (`async_post_call_streaming_iterator_hook`): a stream goes through the
  response stream judge, only released text goes out, a deny ends the stream
  with an error event carrying our reason, the usage chunk settles.
- every answer (`async_post_call_response_headers_hook`) carries
  `x-llm-policy-decision-id`, `-decision`, `-policy-set` and, when there are
  any, `-warnings` (a JSON list), so gateway logs join our decision log.

Importing this module imports litellm, which fetches a model price map from
GitHub at import unless LITELLM_LOCAL_MODEL_COST_MAP is set: it is set here
(default True, an operator's value wins) before litellm is imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import HTTPException
from litellm.exceptions import GuardrailRaisedException
from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.types.guardrails import GuardrailEventHooks
from litellm.types.utils import ModelResponse, ModelResponseStream

from policy_integrations.gateways.guard import (
    Guard,
    PolicyDenied,
    PostCall,
    PreCall,
)
from policy_integrations.gateways.mapping import Identity, identity_from_headers

__all__ = [
    "GuardrailSettings",
    "LLMPolicyGuardrail",
    "PolicyStreamDenied",
    "identity_from_litellm",
]

_log = logging.getLogger(__name__)

#: LiteLLM's user id of the master key: no person, so the request's `user` names the caller.
_MASTER_USER = "default_user_id"
#: The call types that are chat/completions requests (the others pass unjudged).
_CHAT_CALLS = frozenset({"completion", "acompletion"})
#: The request fields the policies see and a modify may rewrite.
_REQUEST_FIELDS = (
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "tools",
    "functions",
    "user",
    "stream",
    "stream_options",
)
#: Where a call's judgement waits between hooks: in LiteLLM's own metadata of the request.
_STATE_KEY = "llm_policy"
HEADER_DECISION_ID = "x-llm-policy-decision-id"


def _secret(value: Any) -> str | None:
    """A setting's value; `os.environ/NAME` reads NAME (LiteLLM's config convention)."""
    if value is None:
        return None
    text = str(value)
    if text.startswith("os.environ/"):
        return os.environ.get(text.removeprefix("os.environ/"))
    return text


@dataclass(frozen=True, kw_only=True)
class GuardrailSettings:
    """Our keys of the guardrail's `litellm_params` (LiteLLM passes them to the constructor).

    - `policy_backend`: `embedded` (the engine in the proxy process) or
      `remote` (an llm-policy server); default `remote` when
      `policy_server_url` is given, else `embedded`.
    - `policy_dir`: the policies file or directory (embedded).
    - `policy_server_url`, `policy_server_token` (a JWT or `lpk_` API key
      with the `evaluator` role; `os.environ/NAME` reads the environment),
      `policy_timeout` (seconds per call, default 2) (remote).
    - `policy_namespace`: only that namespace's policies decide.
    - `fail_mode`: `closed` (default: the backend unreachable denies) or `open`.
    - `deny_status`: the HTTP status of a deny, 400 (default) or 403.
    - `identity_headers`: also read the caller from `x-llm-policy-*` request
      headers (only behind a hop you control; the key's identity wins).
    """

    backend: Literal["embedded", "remote"]
    policy_dir: str | None = None
    server_url: str | None = None
    server_token: str | None = None
    timeout: float = 2.0
    namespace: str | None = None
    fail_mode: Literal["closed", "open"] = "closed"
    deny_status: int = 400
    identity_headers: bool = False

    @classmethod
    def pop_from(cls, params: dict[str, Any]) -> GuardrailSettings:
        """Our settings, removed from `params` (the rest are LiteLLM's)."""
        url = _secret(params.pop("policy_server_url", None))
        backend = str(params.pop("policy_backend", None) or ("remote" if url else "embedded"))
        fail_mode = str(params.pop("fail_mode", None) or "closed")
        status = int(params.pop("deny_status", None) or 400)
        settings = cls(
            backend=backend,  # type: ignore[arg-type]  # checked below
            policy_dir=_secret(params.pop("policy_dir", None)),
            server_url=url,
            server_token=_secret(params.pop("policy_server_token", None)),
            timeout=float(params.pop("policy_timeout", None) or 2.0),
            namespace=_secret(params.pop("policy_namespace", None)),
            fail_mode=fail_mode,  # type: ignore[arg-type]  # checked below
            deny_status=status,
            identity_headers=_flag(params.pop("identity_headers", False)),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if self.backend not in ("embedded", "remote"):
            raise ValueError(f"policy_backend must be 'embedded' or 'remote', not {self.backend!r}")
        if self.fail_mode not in ("closed", "open"):
            raise ValueError(f"fail_mode must be 'closed' or 'open', not {self.fail_mode!r}")
        if self.deny_status not in (400, 403):
            raise ValueError(f"deny_status must be 400 or 403, not {self.deny_status}")
        if self.backend == "embedded" and not self.policy_dir:
            raise ValueError("the embedded llm-policy guardrail needs policy_dir")
        if self.backend == "remote" and not self.server_url:
            raise ValueError("the remote llm-policy guardrail needs policy_server_url")

    def guard(self) -> Guard:
        if self.backend == "embedded":
            return Guard.from_config(
                {
                    "mode": "embedded",
                    "policies": self.policy_dir,
                    "fail_mode": self.fail_mode,
                    **({"namespace": self.namespace} if self.namespace else {}),
                }
            )
        return Guard.from_config(
            {
                "mode": "remote",
                "url": self.server_url,
                "token": self.server_token,
                "timeout": self.timeout,
                "fail_mode": self.fail_mode,
                **({"namespace": self.namespace} if self.namespace else {}),
            }
        )


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping):
            base[key] = _merge(dict(_mapping(base.get(key))), value)
        else:
            base[key] = value
    return base


def identity_from_litellm(
    key: Any, headers: Mapping[str, str] | None = None, *, trust_headers: bool = False
) -> Identity:
    """The caller as LiteLLM authenticated it (`user_api_key_dict`, a UserAPIKeyAuth).

    `user_id` -> user.id (not the master key's placeholder user, so that the
    request's `user` names the caller then), `user_email`, `user_role` ->
    user.roles, `team_id` / `team_alias` -> team.id / team.name,
    `project_id`, `key_alias` (else `key_name`) -> metadata.key_id,
    `org_id` -> metadata.org_id, `end_user_id` -> user.id when no user.
    A `llm_policy` map in the team's and then the key's metadata is merged
    into the context (e.g. `{"team": {"tier": "gold"}}`): that is how an
    operator gives a key or team what the mapping has no field for. With
    `trust_headers`, the `x-llm-policy-*` headers fill what the key leaves
    unset.
    """
    claimed = (
        identity_from_headers(headers) if trust_headers and headers is not None else Identity()
    )
    user = getattr(key, "user_id", None)
    if user == _MASTER_USER:
        user = None
    user = user or getattr(key, "end_user_id", None) or claimed.user_id
    role = getattr(key, "user_role", None)
    roles = (str(getattr(role, "value", role)),) if role else claimed.roles
    extra: dict[str, Any] = {}
    org = getattr(key, "org_id", None)
    if org:
        extra["metadata"] = {"org_id": org}
    _merge(extra, _mapping(_mapping(getattr(key, "team_metadata", None)).get("llm_policy")))
    _merge(extra, _mapping(_mapping(getattr(key, "metadata", None)).get("llm_policy")))
    tags = _mapping(getattr(key, "metadata", None)).get("tags")
    return Identity(
        user_id=user,
        email=getattr(key, "user_email", None) or claimed.email,
        roles=roles,
        permissions=claimed.permissions,
        region=claimed.region,
        mfa_verified=claimed.mfa_verified,
        team_id=getattr(key, "team_id", None) or claimed.team_id,
        team_name=getattr(key, "team_alias", None) or claimed.team_name,
        team_tier=claimed.team_tier,
        project_id=getattr(key, "project_id", None) or claimed.project_id,
        project_name=claimed.project_name,
        environment=claimed.environment,
        key_id=getattr(key, "key_alias", None) or getattr(key, "key_name", None) or claimed.key_id,
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else claimed.tags,
        extra=_merge(dict(claimed.extra), extra),
    )


class PolicyStreamDenied(GuardrailRaisedException):
    """A stream cut by a deny. Not an HTTPException: LiteLLM's proxy turns it into an
    SSE error event carrying `message` (the OpenAI SDK raises it as an APIError),
    where an HTTPException raised after the stream started would just drop the
    connection. `denied` is our PolicyDenied (decision, id, released text)."""

    def __init__(self, denied: PolicyDenied, *, guardrail_name: str | None, status: int) -> None:
        super().__init__(
            guardrail_name=guardrail_name,
            message=_deny_message(denied.reason, denied.decision_id, denied.policy_set),
            should_wrap_with_default_message=False,
            status_code=status,
            blocked_content=True,
        )
        self.denied = denied
        self.type = "policy_violation"
        self.param = None


def _deny_message(reason: str, decision_id: str, policy_set: str) -> str:
    set_part = f", policy set {policy_set}" if policy_set else ""
    return f"llm-policy: {reason} (decision {decision_id}{set_part})"


@dataclass(eq=False)
class _CallState:
    """One call's judgements, kept in the request's LiteLLM metadata between hooks."""

    precall: PreCall
    post: PostCall | None = None
    stream_decision: str | None = None

    def headers(self) -> dict[str, str]:
        pre = self.precall
        out = {
            HEADER_DECISION_ID: pre.decision_id,
            "x-llm-policy-decision": pre.decision.decision,
            "x-llm-policy-policy-set": pre.policy_set,
        }
        warnings = list(pre.warnings)
        if self.post is not None:
            out["x-llm-policy-response-decision-id"] = self.post.decision_id
            out["x-llm-policy-response-decision"] = self.post.decision.decision
            warnings.extend(self.post.decision.warnings)
        if warnings:
            out["x-llm-policy-warnings"] = json.dumps(warnings, ensure_ascii=True)
        if pre.failure:
            out["x-llm-policy-failure"] = json.dumps(pre.failure, ensure_ascii=True)
        return {k: v for k, v in out.items() if v}


def _state(data: Mapping[str, Any]) -> _CallState | None:
    state = _mapping(data.get("metadata")).get(_STATE_KEY)
    return state if isinstance(state, _CallState) else None


def _keep(data: dict[str, Any], state: _CallState) -> None:
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        metadata = data["metadata"] = {}
    metadata[_STATE_KEY] = state


def _request_headers(data: Mapping[str, Any]) -> Mapping[str, str]:
    server = _mapping(data.get("proxy_server_request"))
    headers = server.get("headers") or _mapping(data.get("metadata")).get("headers")
    return headers if isinstance(headers, Mapping) else {}


class LLMPolicyGuardrail(CustomGuardrail):
    """LiteLLM's guardrail for llm-policy (see the module doc and GuardrailSettings).

    LiteLLM builds it with `guardrail_name`, `event_hook` (the config's
    `mode`), `default_on` and every other `litellm_params` key; ours are taken
    out, LiteLLM's passed on. Tests and embedders may pass a ready `guard`.
    """

    def __init__(self, *, guard: Guard | None = None, **params: Any) -> None:
        settings = GuardrailSettings.pop_from(params) if guard is None else None
        params.setdefault(
            "supported_event_hooks",
            [
                GuardrailEventHooks.pre_call,
                GuardrailEventHooks.during_call,
                GuardrailEventHooks.post_call,
            ],
        )
        super().__init__(**params)
        if guard is None:
            assert settings is not None
            guard = settings.guard()
        self.guard = guard
        self.deny_status = settings.deny_status if settings is not None else 400
        self.identity_headers = settings.identity_headers if settings is not None else False

    # --- the request phase ---------------------------------------------------------------

    async def _judge_request(self, data: dict[str, Any], key: Any) -> _CallState:
        state = _state(data)
        if state is not None:
            return state
        request = {name: data[name] for name in _REQUEST_FIELDS if name in data}
        identity = identity_from_litellm(
            key, _request_headers(data), trust_headers=self.identity_headers
        )
        call_id = data.get("litellm_call_id")
        precall = await self.guard.before(
            request, identity, request_id=call_id if isinstance(call_id, str) else None
        )
        state = _CallState(precall)
        _keep(data, state)
        if precall.denied:
            raise self._denied(
                precall.decision.reason or "denied by policy",
                precall.decision_id,
                precall.policy_set,
                failure=precall.failure,
            )
        return state

    def _denied(
        self, reason: str, decision_id: str, policy_set: str, *, failure: str | None = None
    ) -> HTTPException:
        detail: dict[str, Any] = {
            "error": _deny_message(reason, decision_id, policy_set),
            "reason": reason,
            "decision_id": decision_id,
            "policy_set": policy_set,
            "guardrail": self.guardrail_name,
        }
        if failure:
            detail["failure"] = failure
        return HTTPException(
            status_code=self.deny_status,
            detail=detail,
            headers={HEADER_DECISION_ID: decision_id},
        )

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        if call_type not in _CHAT_CALLS:
            return data
        state = await self._judge_request(data, user_api_key_dict)
        send = state.precall.request
        for name in _REQUEST_FIELDS:
            if name in send:
                data[name] = send[name]
            else:
                data.pop(name, None)
        return data

    async def async_moderation_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, call_type: Any
    ) -> None:
        if call_type not in _CHAT_CALLS:
            return
        state = await self._judge_request(data, user_api_key_dict)
        if state.precall.modified:
            _log.warning(
                "decision %s modifies the request, but during_call cannot rewrite it (use pre_call)",
                state.precall.decision_id,
            )

    # --- the response phase --------------------------------------------------------------

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        if not isinstance(response, ModelResponse):
            return response
        state = _state(data)
        if state is None:  # post_call alone: the request was not judged before the call
            state = await self._judge_request(data, user_api_key_dict)
        post = await self.guard.after(state.precall, _dump(response))
        state.post = post
        if post.denied:
            raise self._denied(
                post.decision.reason or "denied by policy",
                post.decision_id,
                post.policy_set,
                failure=post.failure,
            )
        passed = post.completion["choices"][0]["message"]["content"] if response.choices else None
        if response.choices and passed != response.choices[0].message.content:
            response.choices[0].message.content = passed
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[ModelResponseStream, None]:
        state = _state(request_data)
        if state is None:
            state = await self._judge_request(request_data, user_api_key_dict)
        guarded = self.guard.stream(state.precall, _chunk_dicts(response))
        try:
            async for chunk in guarded:
                yield ModelResponseStream(**chunk)
        except PolicyDenied as denied:
            state.stream_decision = "deny"
            raise PolicyStreamDenied(
                denied, guardrail_name=self.guardrail_name, status=self.deny_status
            ) from None
        if guarded.decision is not None:
            state.stream_decision = guarded.decision.decision

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> None:
        """The upstream failed after we allowed the call: release its reservation."""
        state = _state(request_data)
        if state is None or state.precall.denied or state.post is not None:
            return
        if isinstance(original_exception, PolicyStreamDenied | HTTPException):
            return
        await self.guard.abandon(state.precall)

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        state = _state(data)
        return state.headers() if state is not None else None


def _dump(model: Any) -> dict[str, Any]:
    """A LiteLLM response object (pydantic; its model_dump is untyped) as JSON-shaped data."""
    dumped: dict[str, Any] = model.model_dump()
    return dumped


async def _chunk_dicts(response: Any) -> AsyncIterator[Mapping[str, Any]]:
    async for item in response:
        if isinstance(item, ModelResponseStream):
            yield _usage_chunk_as_openai(_dump(item))
        elif isinstance(item, Mapping):
            yield _usage_chunk_as_openai(item)
        else:  # not a chat chunk: nothing the judge can read; never pass it unjudged
            raise TypeError(f"unexpected streamed item {type(item).__name__}")


def _usage_chunk_as_openai(chunk: Mapping[str, Any]) -> Mapping[str, Any]:
    """LiteLLM's usage chunk carries an empty choice; OpenAI's (which the Guard reads) none."""
    if not chunk.get("usage"):
        return chunk
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return chunk
    empty = all(
        isinstance(c, Mapping)
        and c.get("finish_reason") is None
        and not any(_mapping(c.get("delta")).get(k) for k in ("content", "tool_calls", "role"))
        for c in choices
    )
    return {**chunk, "choices": []} if empty else chunk
