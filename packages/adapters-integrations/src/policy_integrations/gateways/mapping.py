"""The context mapping of every gateway, written once (docs/gateways.md, "Context mapping").

- `request_context(request, identity)`: an OpenAI-style chat/completions
  request (a JSON mapping: `model`, `messages`, `max_tokens` or
  `max_completion_tokens`, `temperature`, `tools`/`functions`, `user`,
  `metadata`, `stream`) and the caller's `Identity` -> the engine's context
  (policy language sections 3 and 4: `llm.*`, `user.*`, `team.*`,
  `project.*`, `request.*`, `metadata`).
- `response_section(completion)` and `StreamAccumulator`: a completion (or
  the chunks of a streamed one) -> the `response` section (section 7.1:
  `text`, `finish_reason`, `model`, `tool_calls`, `usage`).
- `apply_request_decision(request, decision)`: a `modify` decision's
  `modifications` and `redact` obligations back onto the chat request
  (model, max_tokens, temperature, messages, tools).
- `apply_response_decision(completion, decision)`: the text the response
  decision passes on (`modifications["response.text"]`) into the completion.

Pure functions over JSON-shaped data; none mutates its input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policy_core.model import Decision, RedactObligation
from policy_core.primitives.redact import REDACTED, redact_text
from policy_core.primitives.tokens import estimate_messages_tokens, estimate_tokens

__all__ = [
    "HEADER_PREFIX",
    "Identity",
    "StreamAccumulator",
    "apply_request_decision",
    "apply_response_decision",
    "estimated_usage",
    "identity_from_headers",
    "message_text",
    "passed_text",
    "request_context",
    "response_section",
]

#: The headers `identity_from_headers` reads: `x-llm-policy-user`, `...-team`, ...
HEADER_PREFIX = "x-llm-policy-"


@dataclass(frozen=True, kw_only=True)
class Identity:
    """Who is calling, as the gateway knows it (an API key's owner, a JWT's subject, ...).

    Each field lands at one context path (docs/gateways.md): `user_id` ->
    `user.id`, `team_id` -> `team.id` (and `user.team`), `team_tier` ->
    `team.tier`, `project_id` -> `project.id`, `environment` ->
    `project.environment`, `key_id` -> `metadata.key_id`, `roles` ->
    `user.roles`, ... `extra` is deep-merged into the context last (e.g.
    `{"team": {"monthly_budget_usd": 50}}`), so anything the mapping does
    not name can still reach the policies.
    """

    user_id: str | None = None
    email: str | None = None
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    region: str | None = None
    mfa_verified: bool | None = None
    team_id: str | None = None
    team_name: str | None = None
    team_tier: str | None = None
    project_id: str | None = None
    project_name: str | None = None
    environment: str | None = None
    key_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    tags: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


_HEADER_FIELDS: dict[str, str] = {
    "user": "user_id",
    "email": "email",
    "region": "region",
    "team": "team_id",
    "team-name": "team_name",
    "tier": "team_tier",
    "project": "project_id",
    "project-name": "project_name",
    "environment": "environment",
    "key-id": "key_id",
}
_HEADER_LISTS: dict[str, str] = {"roles": "roles", "permissions": "permissions", "tags": "tags"}


def identity_from_headers(headers: Mapping[str, str], *, prefix: str = HEADER_PREFIX) -> Identity:
    """The Identity that `x-llm-policy-*` headers name (case-insensitive; lists comma-separated).

    `x-llm-policy-user`, `-email`, `-region`, `-team`, `-team-name`, `-tier`,
    `-project`, `-project-name`, `-environment`, `-key-id`, and the lists
    `-roles`, `-permissions`, `-tags`; `-mfa` is `true` or `false`. Only
    trust these headers from a hop you control: they are claims, not proof.
    """
    found: dict[str, Any] = {}
    for name, value in headers.items():
        lower = name.lower()
        if not lower.startswith(prefix):
            continue
        key = lower[len(prefix) :]
        if key in _HEADER_FIELDS:
            found[_HEADER_FIELDS[key]] = value.strip()
        elif key in _HEADER_LISTS:
            found[_HEADER_LISTS[key]] = tuple(v.strip() for v in value.split(",") if v.strip())
        elif key == "mfa":
            found["mfa_verified"] = value.strip().lower() == "true"
    return Identity(**found)


def message_text(content: Any) -> str:
    """The text of a message's `content`: the string, or its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""


def _messages(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return []
    out: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        entry: dict[str, Any] = {"role": message.get("role"), "content": message.get("content")}
        if message.get("name") is not None:
            entry["name"] = message["name"]
        if message.get("tool_calls"):
            entry["tool_calls"] = _tool_calls(message["tool_calls"])
        out.append(entry)
    return out


def _functions(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    tools = request.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            fn = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(fn, Mapping):
                out.append({k: fn[k] for k in ("name", "description", "parameters") if k in fn})
    functions = request.get("functions")  # the deprecated form
    if isinstance(functions, list):
        out.extend(
            {k: fn[k] for k in ("name", "description", "parameters") if k in fn}
            for fn in functions
            if isinstance(fn, Mapping)
        )
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _merge(dict(base[key]), value)
        elif isinstance(value, Mapping):
            base[key] = _merge({}, value)
        else:
            base[key] = value
    return base


def _put(section: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != ():
        section[key] = list(value) if isinstance(value, tuple) else value


def request_context(
    request: Mapping[str, Any],
    identity: Identity | None = None,
    *,
    provider: str | None = "openai",
    request_id: str | None = None,
) -> dict[str, Any]:
    """The engine's context for a chat/completions `request` made by `identity`.

    `llm.prompt` is the text of the last user message (policies on "the
    prompt" read it); `llm.messages` is the whole conversation (`role`,
    `content`, `name`, `tool_calls`), which the PII facts also read.
    `llm.estimated_tokens` is given (the messages' estimate) so that the last
    user message, present in both, is not counted twice in
    `llm.estimated_cost`. The request's `user` is `user.id` when the identity
    names no user; its `metadata` (OpenAI's string map) goes under `metadata`.
    """
    identity = identity or Identity()
    messages = _messages(request)
    llm: dict[str, Any] = {}
    _put(llm, "provider", provider)
    _put(llm, "model", request.get("model"))
    prompt = next(
        (message_text(m["content"]) for m in reversed(messages) if m.get("role") == "user"), None
    )
    _put(llm, "prompt", prompt)
    llm["messages"] = messages
    llm["estimated_tokens"] = estimate_messages_tokens(messages)
    max_tokens = request.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = request.get("max_tokens")
    _put(llm, "max_tokens", max_tokens)
    _put(llm, "temperature", request.get("temperature"))
    functions = _functions(request)
    if functions:
        llm["functions"] = functions
    llm["stream"] = bool(request.get("stream"))

    user: dict[str, Any] = {}
    _put(user, "id", identity.user_id or request.get("user"))
    _put(user, "email", identity.email)
    user["roles"] = list(identity.roles)
    user["permissions"] = list(identity.permissions)
    _put(user, "team", identity.team_id)
    _put(user, "region", identity.region)
    _put(user, "mfa_verified", identity.mfa_verified)

    context: dict[str, Any] = {"llm": llm, "user": user}
    team: dict[str, Any] = {}
    _put(team, "id", identity.team_id)
    _put(team, "name", identity.team_name)
    _put(team, "tier", identity.team_tier)
    if team:
        context["team"] = team
    project: dict[str, Any] = {}
    _put(project, "id", identity.project_id)
    _put(project, "name", identity.project_name)
    _put(project, "environment", identity.environment)
    if project:
        context["project"] = project
    req: dict[str, Any] = {}
    _put(req, "id", request_id)
    _put(req, "ip_address", identity.ip_address)
    _put(req, "user_agent", identity.user_agent)
    _put(req, "tags", identity.tags)
    if req:
        context["request"] = req
    metadata: dict[str, Any] = {}
    given = request.get("metadata")
    if isinstance(given, Mapping):
        metadata.update(given)
    _put(metadata, "key_id", identity.key_id)
    if metadata:
        context["metadata"] = metadata
    if identity.extra:
        _merge(context, identity.extra)
    return context


# --- the completion -> the response section ----------------------------------------------------


def _arguments(raw: Any) -> dict[str, Any]:
    """A tool call's `arguments` as a map: the JSON object, else `{"_raw": text}`."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str):
        try:
            value = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {"_raw": raw}
        return value if isinstance(value, dict) else {"_raw": raw}
    return {}


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not isinstance(calls, list):
        return out
    for call in calls:
        fn = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(fn, Mapping):
            out.append({"name": fn.get("name"), "arguments": _arguments(fn.get("arguments"))})
    return out


def _usage(usage: Any) -> dict[str, int] | None:
    if not isinstance(usage, Mapping):
        return None
    out: dict[str, int] = {}
    for key in ("prompt_tokens", "completion_tokens"):
        value = usage.get(key)
        if type(value) is int and value >= 0:
            out[key] = value
    return out or None


def response_section(completion: Mapping[str, Any]) -> dict[str, Any]:
    """The `response` section (spec 7.1) of a chat completion (its first choice)."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, Mapping) else None
    message = message if isinstance(message, Mapping) else {}
    response: dict[str, Any] = {"text": message_text(message.get("content"))}
    if isinstance(choice, Mapping) and choice.get("finish_reason") is not None:
        response["finish_reason"] = choice["finish_reason"]
    if isinstance(completion.get("model"), str):
        response["model"] = completion["model"]
    response["tool_calls"] = _tool_calls(message.get("tool_calls"))
    usage = _usage(completion.get("usage"))
    if usage is not None:
        response["usage"] = usage
    return response


class StreamAccumulator:
    """Collects what the chunks of a streamed completion say (choice 0), for `close`.

    `add(chunk)` answers the chunk's text delta ("" when it has none); the
    `finish_reason`, `model`, `usage` (the last chunk's, with
    `stream_options.include_usage`) and the tool calls, whose name and
    argument pieces arrive by `index`, are kept for `response()`.
    """

    __slots__ = ("_calls", "finish_reason", "model", "usage")

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.usage: dict[str, int] | None = None
        self._calls: dict[int, list[str]] = {}

    def add(self, chunk: Mapping[str, Any]) -> str:
        if isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        usage = _usage(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return ""
        choice = choices[0]
        if not isinstance(choice, Mapping):
            return ""
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, Mapping):
            return ""
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if not isinstance(call, Mapping):
                    continue
                index = call.get("index", 0)
                entry = self._calls.setdefault(index if type(index) is int else 0, ["", ""])
                fn = call.get("function")
                if isinstance(fn, Mapping):
                    entry[0] += fn.get("name") or ""
                    entry[1] += fn.get("arguments") or ""
        content = delta.get("content")
        return content if isinstance(content, str) else ""

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls so far, in index order, as `response.tool_calls` has them."""
        return [
            {"name": name, "arguments": _arguments(args)}
            for _, (name, args) in sorted(self._calls.items())
        ]


def estimated_usage(context: Mapping[str, Any], text: str) -> dict[str, int]:
    """A `usage` for a response the upstream reported none for (or a stream cut short).

    `prompt_tokens` is the context's `llm.estimated_tokens`, `completion_tokens`
    the estimate of `text` (what was received): a lower bound of what the
    upstream bills, so that the call's spend is settled rather than dropped.
    """
    llm = context.get("llm")
    prompt = llm.get("estimated_tokens") if isinstance(llm, Mapping) else None
    return {
        "prompt_tokens": prompt if type(prompt) is int and prompt >= 0 else 0,
        "completion_tokens": estimate_tokens(text),
    }


# --- decisions -> the request and the completion ---------------------------------------------


def _redact_content(content: Any, pattern: str) -> Any:
    if pattern in ("all", "*"):
        return REDACTED if isinstance(content, str) else _redact_parts(content, pattern)
    types = None if pattern == "pii" else (pattern,)
    if isinstance(content, str):
        return redact_text(content, types)
    return _redact_parts(content, pattern)


def _redact_parts(content: Any, pattern: str) -> Any:
    if not isinstance(content, list):
        return content
    out: list[Any] = []
    for part in content:
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            part = dict(part)
            part["text"] = _redact_content(part["text"], pattern)
        out.append(part)
    return out


def _last_user(messages: Sequence[Mapping[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


_SCALARS = {"llm.model": "model", "llm.temperature": "temperature"}


def apply_request_decision(request: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The chat request with `decision`'s modifications and request redactions applied.

    Modifications (spec 5.3; `null` removes): `llm.model` -> `model`,
    `llm.max_tokens` -> `max_completion_tokens` when the request used it, else
    `max_tokens`; `llm.temperature` -> `temperature`; `llm.messages` -> the
    messages; `llm.prompt` -> the content of the last user message;
    `llm.functions` -> `tools` (each a function). `redact` obligations on
    `llm.prompt` redact the last user message, on `llm.messages` (or `llm`)
    every message's content. Paths outside `llm` do not change the request
    (they stay in the decision for the caller). A deny changes nothing.
    """
    out = dict(request)
    if decision.decision == "deny":
        return out
    messages = [dict(m) if isinstance(m, Mapping) else m for m in out.get("messages") or []]
    touched = False
    for path, value in decision.modifications.items():
        if path in _SCALARS:
            key = _SCALARS[path]
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        elif path == "llm.max_tokens":
            key = "max_completion_tokens" if "max_completion_tokens" in out else "max_tokens"
            if value is None:
                out.pop("max_tokens", None)
                out.pop("max_completion_tokens", None)
            else:
                out[key] = value
        elif path == "llm.messages" and isinstance(value, list):
            messages = [dict(m) if isinstance(m, Mapping) else m for m in value]
            touched = True
        elif path == "llm.prompt":
            index = _last_user(messages)
            if index is not None:
                messages[index]["content"] = "" if value is None else value
                touched = True
        elif path == "llm.functions":
            if value is None:
                out.pop("tools", None)
                out.pop("functions", None)
            elif isinstance(value, list):
                out.pop("functions", None)
                out["tools"] = [{"type": "function", "function": fn} for fn in value]
    for obligation in decision.obligations:
        if not isinstance(obligation, RedactObligation):
            continue
        for name in obligation.fields:
            if name in ("llm.messages", "llm"):
                targets = range(len(messages))
            elif name == "llm.prompt":
                index = _last_user(messages)
                targets = range(index, index + 1) if index is not None else range(0)
            else:
                continue
            for i in targets:
                if isinstance(messages[i], dict) and "content" in messages[i]:
                    redacted = _redact_content(messages[i]["content"], obligation.pattern)
                    if redacted != messages[i]["content"]:
                        messages[i]["content"] = redacted
                        touched = True
    if touched:
        out["messages"] = messages
    return out


def passed_text(decision: Decision, text: str) -> str:
    """The completion text `decision` passes on: `modifications["response.text"]`, else `text`."""
    value = decision.modifications.get("response.text", text)
    return value if isinstance(value, str) else text


def apply_response_decision(completion: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The completion with the text the response decision passes on (redacted where it says)."""
    out = dict(completion)
    if "response.text" not in decision.modifications:
        return out
    choices = out.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return out
    first = dict(choices[0])
    message = dict(first.get("message") or {})
    message["content"] = passed_text(decision, message_text(message.get("content")))
    first["message"] = message
    out["choices"] = [first, *choices[1:]]
    return out
