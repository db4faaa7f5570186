"""List prices of the main hosted models, and the `llm.estimated_cost` fact.

Prices are the providers' public list prices for standard (non-batch,
non-cached) text tokens, at the lowest context tier where a model has tiers.
They were compiled by hand, without network access, from what was known of
the providers' pricing pages on `PRICES_AS_OF`; docs/primitives.md lists them.
A model that is not in the table has no price (`None`), never a default.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from policy_core.primitives.tokens import estimate_request_tokens

__all__ = [
    "PRICES",
    "PRICES_AS_OF",
    "ModelPrice",
    "estimate_cost",
    "estimate_request_cost",
    "model_price",
    "priced",
]

PRICES_AS_OF = "2025-11-25"


class ModelPrice(msgspec.Struct, frozen=True, kw_only=True):
    """USD per 1,000 input (prompt) and per 1,000 output (completion) tokens."""

    provider: str
    model: str
    input_per_1k: float
    output_per_1k: float


# USD per million tokens, as the providers publish them: (input, output).
_PER_MILLION: dict[str, dict[str, tuple[float, float]]] = {
    "openai": {
        "gpt-5": (1.25, 10.00),
        "gpt-5-chat-latest": (1.25, 10.00),
        "gpt-5-codex": (1.25, 10.00),
        "gpt-5-mini": (0.25, 2.00),
        "gpt-5-nano": (0.05, 0.40),
        "gpt-5-pro": (15.00, 120.00),
        "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "gpt-4o": (2.50, 10.00),
        "gpt-4o-2024-05-13": (5.00, 15.00),  # the first snapshot kept its launch price
        "chatgpt-4o-latest": (5.00, 15.00),
        "gpt-4o-mini": (0.15, 0.60),
        "o1": (15.00, 60.00),
        "o1-preview": (15.00, 60.00),
        "o1-mini": (1.10, 4.40),
        "o1-pro": (150.00, 600.00),
        "o3": (2.00, 8.00),
        "o3-mini": (1.10, 4.40),
        "o3-pro": (20.00, 80.00),
        "o4-mini": (1.10, 4.40),
        "gpt-4-turbo": (10.00, 30.00),
        "gpt-4-1106-preview": (10.00, 30.00),
        "gpt-4-0125-preview": (10.00, 30.00),
        "gpt-4": (30.00, 60.00),
        "gpt-4-32k": (60.00, 120.00),
        "gpt-3.5-turbo": (0.50, 1.50),
        "gpt-3.5-turbo-1106": (1.00, 2.00),
        "gpt-3.5-turbo-0613": (1.50, 2.00),
    },
    "anthropic": {
        "claude-opus-4-5": (5.00, 25.00),
        "claude-sonnet-4-5": (3.00, 15.00),
        "claude-haiku-4-5": (1.00, 5.00),
        "claude-opus-4-1": (15.00, 75.00),
        "claude-opus-4": (15.00, 75.00),
        "claude-sonnet-4": (3.00, 15.00),
        "claude-3-7-sonnet": (3.00, 15.00),
        "claude-3-5-sonnet": (3.00, 15.00),
        "claude-3-5-haiku": (0.80, 4.00),
        "claude-3-opus": (15.00, 75.00),
        "claude-3-sonnet": (3.00, 15.00),
        "claude-3-haiku": (0.25, 1.25),
    },
    "google": {
        "gemini-2.5-pro": (1.25, 10.00),
        "gemini-2.5-flash": (0.30, 2.50),
        "gemini-2.5-flash-lite": (0.10, 0.40),
        "gemini-2.0-flash": (0.10, 0.40),
        "gemini-2.0-flash-lite": (0.075, 0.30),
        "gemini-1.5-pro": (1.25, 5.00),
        "gemini-1.5-flash": (0.075, 0.30),
        "gemini-1.5-flash-8b": (0.0375, 0.15),
    },
}

PRICES: tuple[ModelPrice, ...] = tuple(
    ModelPrice(
        provider=provider,
        model=model,
        input_per_1k=round(inp / 1000, 10),
        output_per_1k=round(out / 1000, 10),
    )
    for provider, models in _PER_MILLION.items()
    for model, (inp, out) in models.items()
)

_BY_NAME: dict[str, ModelPrice] = {p.model: p for p in PRICES}
# Longest first, so `gpt-4o-mini-2024-07-18` finds `gpt-4o-mini` before `gpt-4o`.
_FAMILIES: tuple[ModelPrice, ...] = tuple(sorted(PRICES, key=lambda p: -len(p.model)))

# What may follow a family name in a snapshot or alias of the same model:
# dates (-2024-08-06, -20241022, -0613, -05-20), numbered revisions (-001),
# -latest/-preview/-exp, and cloud version tags (-v2, -v2:0). Anything else
# (-audio-preview, -search-preview, -realtime, -image) is another product.
_SNAPSHOT_SUFFIX = re.compile(
    r"(?:-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|\d{3}|\d{2}-\d{2}|latest|preview|exp|v\d+(?::\d+)?))+"
)

_PROVIDER_ALIASES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "gemini": "google",
    "google-ai": "google",
    "google_genai": "google",
}


def _normalize(model: str) -> str:
    """Reduce cloud and router spellings to the first-party model name.

    `openai/gpt-4o`, `models/gemini-1.5-pro`, Bedrock's
    `us.anthropic.claude-3-5-sonnet-20241022-v2:0` and Vertex's
    `claude-3-5-sonnet-v2@20241022` all name a first-party model.
    """
    name = model.strip().lower().rsplit("/", 1)[-1]
    if "anthropic." in name:
        name = name.split("anthropic.", 1)[1]
    return name.replace("@", "-")


@functools.lru_cache(maxsize=512)
def _lookup(name: str) -> ModelPrice | None:
    exact = _BY_NAME.get(name)
    if exact is not None:
        return exact
    for price in _FAMILIES:
        if name.startswith(price.model) and _SNAPSHOT_SUFFIX.fullmatch(name, len(price.model)):
            return price
    return None


@functools.lru_cache(maxsize=4096)  # every evaluation asks again for the same few models
def model_price(model: str | None, provider: str | None = None) -> ModelPrice | None:
    """The list price of `model`, or `None` when it is not in the table.

    An exact name wins; otherwise a dated snapshot or alias maps to its family
    by the longest known prefix (`gpt-4o-2024-08-06` -> `gpt-4o`,
    `claude-3-5-sonnet-20241022` -> `claude-3-5-sonnet`). A `provider` naming
    one of the first parties (`openai`, `anthropic`, `google`) must agree with
    the model's; any other provider (a cloud reseller, a router) is ignored and
    the first-party list price applies.
    """
    if not isinstance(model, str) or not model:
        return None
    price = _lookup(_normalize(model))
    if price is None:
        return None
    if isinstance(provider, str):
        first_party = _PROVIDER_ALIASES.get(provider.strip().lower())
        if first_party is not None and first_party != price.provider:
            return None
    return price


def _tokens(value: object) -> float:
    """A token count, or 0 for anything that is not a finite non-negative number."""
    if type(value) is int:
        return float(value) if value > 0 else 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) and number > 0 else 0.0


def estimate_cost(
    model: str | None,
    input_tokens: float,
    output_tokens: float,
    provider: str | None = None,
) -> float | None:
    """USD for `input_tokens` and `output_tokens` of `model`; `None` if unpriced.

    Negative, infinite or non-numeric token counts count as 0.
    """
    price = model_price(model, provider)
    if price is None:
        return None
    # A positive int (the usual case) multiplies as float(int) would: skip _tokens' checks.
    i = input_tokens if type(input_tokens) is int and input_tokens > 0 else _tokens(input_tokens)
    o = (
        output_tokens
        if type(output_tokens) is int and output_tokens > 0
        else _tokens(output_tokens)
    )
    return priced(price, i, o)


def priced(price: ModelPrice, input_tokens: float, output_tokens: float) -> float:
    """USD for non-negative token counts at `price`, rounded to 10 decimals.

    Monotone in both counts (non-negative prices, monotone float operations
    and rounding): the engine relies on it to bound a cost from above.
    """
    return round(
        (input_tokens * price.input_per_1k + output_tokens * price.output_per_1k) / 1000, 10
    )


def estimate_request_cost(llm: Mapping[str, Any]) -> float | None:
    """`llm.estimated_cost`: the estimated input tokens plus `max_tokens` (0 if absent).

    Input tokens are `estimate_request_tokens(llm)`, priced at the model's
    input price; `llm.max_tokens` is priced at its output price. `None` when
    the model (with `llm.provider`, if any) is not in the table.
    """
    if type(llm) is not dict and not isinstance(llm, Mapping):
        return None
    model = llm.get("model")
    provider = llm.get("provider")
    return estimate_cost(
        model if isinstance(model, str) else None,
        estimate_request_tokens(llm),
        _tokens(llm.get("max_tokens")),
        provider if isinstance(provider, str) else None,
    )
