"""Derived facts (spec 3): computed lazily, once per evaluation, only when a policy refers to them."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping
from typing import Any

from policy_core.compiler.runtime import Env

__all__ = ["DERIVED_FACTS", "derived_fact", "primitives"]


def _llm(env: Env) -> Mapping[str, Any]:
    llm = env.ctx.get("llm")
    return llm if type(llm) is dict or isinstance(llm, Mapping) else {}


class _Primitives:
    """The primitives module's functions, imported on first use (import policy_core stays light)."""

    def __getattr__(self, name: str) -> Any:
        loaded = primitives()
        for key, value in vars(loaded).items():
            setattr(self, key, value)  # later lookups find the attribute and skip __getattr__
        return getattr(loaded, name)


_p: Any = _Primitives()


def _request_text(llm: Mapping[str, Any]) -> str:
    """The prompt and the text of every message, for PII detection."""
    parts: list[str] = []
    prompt = llm.get("prompt")
    if isinstance(prompt, str):
        parts.append(prompt)
    messages = llm.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(
                    p["text"]
                    for p in content
                    if isinstance(p, Mapping) and isinstance(p.get("text"), str)
                )
    return "\n".join(parts)


def _tokens(env: Env) -> int:
    return _p.estimate_request_tokens(_llm(env))  # type: ignore[no-any-return]


@functools.cache
def primitives() -> Any:
    """The primitives, imported on first use (an import statement per call costs microseconds)."""
    from policy_core.primitives import costs, pii, tokens

    return types.SimpleNamespace(
        estimate_request_tokens=tokens.estimate_request_tokens,
        estimate_tokens=tokens.estimate_tokens,
        estimate_cost=costs.estimate_cost,
        pii_types=pii.pii_types,
    )


def _cost(env: Env) -> float | None:
    llm = _llm(env)
    model = llm.get("model")
    if type(model) is not str:
        return None
    provider = llm.get("provider")
    max_tokens = llm.get("max_tokens")
    output = max_tokens if type(max_tokens) is int else 0
    # llm.estimated_tokens as derived_fact gives it, without its second lookup of llm.
    if "estimated_tokens" in llm:
        tokens = llm["estimated_tokens"]
    elif "estimated_tokens" in env.memo:
        tokens = env.memo["estimated_tokens"]
    else:
        tokens = env.memo["estimated_tokens"] = _p.estimate_request_tokens(llm)
    cost: float | None = _p.estimate_cost(
        model, tokens, output, provider if type(provider) is str else None
    )
    return cost


def _pii_types(env: Env) -> list[str]:
    return _p.pii_types(_request_text(_llm(env)))  # type: ignore[no-any-return]


def _contains_pii(env: Env) -> bool:
    return bool(derived_fact(env, "pii_types"))


DERIVED_FACTS: dict[str, Callable[[Env], Any]] = {
    "estimated_tokens": _tokens,
    "estimated_cost": _cost,
    "pii_types": _pii_types,
    "contains_pii": _contains_pii,
}


def derived_fact(env: Env, name: str) -> Any:
    """`llm.<name>`: the caller's value when present, else computed once per evaluation."""
    llm = env.ctx.get("llm")
    if (type(llm) is dict or isinstance(llm, Mapping)) and name in llm:
        return llm[name]
    memo = env.memo  # keyed by the bare name: other memo entries use tuple keys
    if name in memo:
        return memo[name]
    value = memo[name] = DERIVED_FACTS[name](env)
    return value
