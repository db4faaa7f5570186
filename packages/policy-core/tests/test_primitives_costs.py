from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from hypothesis import given, strategies as st
from policy_core.primitives.costs import (
    PRICES,
    PRICES_AS_OF,
    ModelPrice,
    estimate_cost,
    estimate_request_cost,
    model_price,
)
from policy_core.primitives.tokens import estimate_request_tokens


def test_prices_as_of_is_an_iso_date() -> None:
    assert dt.date.fromisoformat(PRICES_AS_OF).isoformat() == PRICES_AS_OF


def test_table_is_well_formed() -> None:
    names = [p.model for p in PRICES]
    assert len(names) == len(set(names))
    for p in PRICES:
        assert p.provider in {"openai", "anthropic", "google"}
        assert 0 < p.input_per_1k <= p.output_per_1k


def test_model_price_is_a_frozen_struct() -> None:
    price = model_price("gpt-4o")
    assert price == ModelPrice(
        provider="openai", model="gpt-4o", input_per_1k=0.0025, output_per_1k=0.01
    )
    with pytest.raises(AttributeError):
        price.model = "x"  # type: ignore[misc]
    assert msgspec.to_builtins(price)["input_per_1k"] == 0.0025


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-4-turbo-preview", "gpt-4-turbo"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-32k-0613", "gpt-4-32k"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("o1-2024-12-17", "o1"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("gemini-1.5-flash-8b-001", "gemini-1.5-flash-8b"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("models/gemini-2.0-flash", "gemini-2.0-flash"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
    ],
)
def test_snapshots_map_to_their_family(name: str, family: str) -> None:
    price = model_price(name)
    assert price is not None
    assert price.model == family


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        "my-model",
        "gpt-4o-audio-preview",
        "gpt-4o-mini-search-preview",
        "gpt-4.5-preview",
        "gpt-4ox",
        "claude-3-5-sonnetx",
        "gemini-2.5-flash-image",
        "llama-3-70b",
    ],
)
def test_unknown_models_have_no_price(name: str | None) -> None:
    assert model_price(name) is None
    assert estimate_cost(name, 1000, 1000) is None


def test_provider_must_agree_when_it_is_a_first_party() -> None:
    assert model_price("gpt-4o", "openai") is not None
    assert model_price("gpt-4o", "OpenAI") is not None
    assert model_price("gpt-4o", "anthropic") is None
    assert model_price("gemini-2.5-pro", "gemini") is not None
    # Resellers and routers are not first parties: the list price applies.
    assert model_price("gpt-4o", "azure") is not None
    assert model_price("claude-3-haiku-20240307", "bedrock") is not None


def test_estimate_cost() -> None:
    # gpt-4o: $2.50 / $10.00 per million tokens.
    assert estimate_cost("gpt-4o", 1000, 500) == pytest.approx(0.0025 + 0.005)
    assert estimate_cost("claude-3-opus-20240229", 1_000_000, 0) == pytest.approx(15.0)
    assert estimate_cost("gpt-4o", 0, 0) == 0
    assert estimate_cost("gpt-4o", -5, float("nan")) == 0
    assert estimate_cost("gpt-4o", float("inf"), True) == 0
    assert estimate_cost("gpt-4o", 1000, 0, provider="anthropic") is None


def test_estimate_request_cost() -> None:
    llm = {"model": "gpt-4o-mini", "prompt": "Summarize this text please.", "max_tokens": 200}
    tokens = estimate_request_tokens(llm)
    expected = (tokens * 0.15 + 200 * 0.60) / 1_000_000
    assert estimate_request_cost(llm) == pytest.approx(expected)
    # No max_tokens: output counts 0; an unknown model or no model: None.
    assert estimate_request_cost({"model": "gpt-4o-mini", "prompt": "hi"}) == pytest.approx(
        estimate_request_tokens({"prompt": "hi"}) * 0.15 / 1_000_000
    )
    assert estimate_request_cost({"model": "unknown", "prompt": "hi"}) is None
    assert estimate_request_cost({"prompt": "hi"}) is None
    assert estimate_request_cost({"model": 5}) is None
    assert estimate_request_cost({"model": "gpt-4o", "provider": "google"}) is None
    assert estimate_request_cost({"model": "gpt-4o", "max_tokens": "many"}) == 0
    assert estimate_request_cost(None) is None  # type: ignore[arg-type]


@given(
    st.sampled_from([p.model for p in PRICES]),
    st.integers(min_value=0, max_value=10**7),
    st.integers(min_value=0, max_value=10**7),
)
def test_cost_is_linear_and_non_negative(model: str, inp: int, out: int) -> None:
    cost = estimate_cost(model, inp, out)
    assert cost is not None
    assert cost >= 0
    price = model_price(model)
    assert price is not None
    assert price.model == model
    assert cost == pytest.approx((inp * price.input_per_1k + out * price.output_per_1k) / 1000)


@given(
    st.sampled_from([p.model for p in PRICES]),
    st.one_of(st.integers(-5, 10**9), st.floats(allow_nan=True), st.booleans()),
    st.one_of(st.integers(-5, 10**9), st.floats(allow_nan=True), st.booleans()),
)
def test_cost_is_the_documented_arithmetic(
    model: str, tokens_in: object, tokens_out: object
) -> None:
    """Counts that are not finite, non-negative numbers (or are booleans) count as 0."""

    def count(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return 0.0
        number = float(value)
        return number if number == number and abs(number) != float("inf") and number > 0 else 0.0

    price = model_price(model)
    assert price is not None
    expected = round(
        (count(tokens_in) * price.input_per_1k + count(tokens_out) * price.output_per_1k) / 1000, 10
    )
    assert estimate_cost(model, tokens_in, tokens_out) == expected  # type: ignore[arg-type]
