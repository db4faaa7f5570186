"""Derived facts (spec 3): computed lazily, once per evaluation, only when a policy refers to them.

`compare_cost` is a fast copy of comparing the exact `llm.estimated_cost`: it
decides from an upper bound when that suffices. Parity tests:
packages/policy-core/tests/test_core_properties.py::test_cost_comparisons_agree_with_the_exact_cost
and ::test_cost_comparisons_at_the_exact_cost_and_its_neighbours.
"""

from __future__ import annotations

import functools
import operator
import types
from collections.abc import Callable, Mapping
from typing import Any

from policy_core.compiler.runtime import Env
from policy_core.compiler.values import COMPARE

__all__ = [
    "DERIVED_FACTS",
    "RESPONSE_FACTS",
    "compare_cost",
    "derived_fact",
    "primitives",
    "response_fact",
]


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
        model_price=costs.model_price,
        priced=costs.priced,
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


# --- the response section's derived facts (spec 7.1) --------------------------------


def _response(env: Env) -> Mapping[str, Any]:
    response = env.ctx.get("response")
    return response if type(response) is dict or isinstance(response, Mapping) else {}


def _response_text(env: Env) -> str | None:
    text = _response(env).get("text")
    return text if type(text) is str else None


def _response_cost(env: Env) -> float | None:
    """USD of `response.usage` at the model's prices; null without usage or for an unknown model."""
    response = _response(env)
    usage = response.get("usage")
    if not isinstance(usage, Mapping):
        return None
    model = response.get("model")
    llm = _llm(env)
    if type(model) is not str:
        model = llm.get("model")
    if type(model) is not str:
        return None
    provider = llm.get("provider")
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    cost: float | None = _p.estimate_cost(
        model,
        prompt if type(prompt) is int else 0,
        completion if type(completion) is int else 0,
        provider if type(provider) is str else None,
    )
    return cost


def _response_pii_types(env: Env) -> list[str]:
    return _p.pii_types(_response_text(env))  # type: ignore[no-any-return]


def _response_contains_pii(env: Env) -> bool:
    return bool(response_fact(env, "pii_types"))


def _tool_names(env: Env) -> list[Any]:
    calls = _response(env).get("tool_calls")
    if not isinstance(calls, list):
        return []
    return [c.get("name") for c in calls if isinstance(c, Mapping)]


RESPONSE_FACTS: dict[str, Callable[[Env], Any]] = {
    "cost": _response_cost,
    "pii_types": _response_pii_types,
    "contains_pii": _response_contains_pii,
    "tool_names": _tool_names,
}


def response_fact(env: Env, name: str) -> Any:
    """`response.<name>`: the caller's value when present, else computed once per evaluation."""
    response = env.ctx.get("response")
    if (type(response) is dict or isinstance(response, Mapping)) and name in response:
        return response[name]
    key = ("response", name)
    memo = env.memo
    if key in memo:
        return memo[key]
    value = memo[key] = RESPONSE_FACTS[name](env)
    return value


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


# --- comparisons of llm.estimated_cost with a number ------------------------------

_NUMERIC = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_PLAIN_KEY = "estimated_cost plain"  # memo key (no derived fact has a space in its name)
_UNSET = object()


def _plain_cost_inputs(env: Env) -> tuple[str | None, Any, int, float] | None:
    """(prompt, price, output tokens, upper bound of the cost) when the cost depends
    on an ASCII prompt alone, else None (caller-supplied figures, messages, a
    non-ASCII prompt, no price).

    An ASCII prompt of n bytes has at most n + 1 pieces, so at most
    int((n / 4 + n + 1) / 2 + 0.5) tokens (primitives/tokens.py); `priced` is
    monotone, so pricing that many tokens bounds the cost from above.
    """
    llm = env.ctx.get("llm")
    if type(llm) is not dict or "estimated_cost" in llm or "estimated_tokens" in llm:
        return None
    model = llm.get("model")
    if type(model) is not str or llm.get("messages") is not None:
        return None
    prompt = llm.get("prompt")
    if prompt is not None and (type(prompt) is not str or not prompt.isascii()):
        return None
    provider = llm.get("provider")
    price = _p.model_price(model, provider if type(provider) is str else None)
    if price is None:
        return None
    max_tokens = llm.get("max_tokens")
    output = max_tokens if type(max_tokens) is int and max_tokens > 0 else 0
    size = len(prompt) if prompt else 0
    most = int((size * 0.25 + size + 1) * 0.5 + 0.5)
    return prompt, price, output, _p.priced(price, most, output)


def compare_cost(env: Env, op: str, limit: float) -> bool:
    """`llm.estimated_cost <op> limit` for a number `limit`, as the generated comparison.

    Most requests are far below any cost cap. For a plain request (an ASCII
    prompt, a priced model) an upper bound of the cost is found without
    estimating tokens (_plain_cost_inputs). When the bound is below the limit the
    comparison is decided; otherwise the exact cost is computed from the same
    inputs with `priced`, as `estimate_cost` computes it, and remembered.
    """
    memo = env.memo
    cost = memo.get("estimated_cost", _UNSET)
    if cost is _UNSET:
        plain = memo.get(_PLAIN_KEY, _UNSET)
        if plain is _UNSET:
            plain = memo[_PLAIN_KEY] = _plain_cost_inputs(env)
        if plain is None:
            cost = derived_fact(env, "estimated_cost")
        else:
            prompt, price, output, bound = plain
            # A bound below the limit decides; one equal to it decides unless the
            # cost may equal the limit too.
            if bound < limit or (bound == limit and op in (">", "<=")):
                return op == "<" or op == "<="
            tokens = memo.get("estimated_tokens", _UNSET)
            if tokens is _UNSET:
                tokens = memo["estimated_tokens"] = _p.estimate_tokens(prompt) if prompt else 0
            cost = memo["estimated_cost"] = _p.priced(price, tokens, output)
    if type(cost) is float or type(cost) is int:
        return _NUMERIC[op](cost, limit)  # type: ignore[no-any-return]
    return COMPARE[op](cost, limit)  # null is neither above nor below; other types raise
