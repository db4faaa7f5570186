from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st
from policy_core.primitives.tokens import (
    MESSAGE_OVERHEAD_TOKENS,
    estimate_messages_tokens,
    estimate_request_tokens,
    estimate_tokens,
)

# Token counts of these samples under OpenAI's o200k_base / cl100k_base
# encodings (measured once with a tiktoken-compatible tokenizer).
SAMPLES = [
    ("Hello world, this is a test of the tokenizer.", 11),
    ("def foo(x): return x + 1", 9),
    (
        "The policy engine evaluates every request against the active policies and returns "
        "a decision: allow, deny, modify or warn, with the reasons and obligations.",
        29,
    ),
]


def test_empty_and_none_are_zero() -> None:
    assert estimate_tokens(None) == 0
    assert estimate_tokens("") == 0


@pytest.mark.parametrize("text", ["a", " ", "\n", "!", "é", "策"])
def test_any_text_is_at_least_one_token(text: str) -> None:
    assert estimate_tokens(text) == 1


@pytest.mark.parametrize(("text", "tokens"), SAMPLES)
def test_close_to_a_bpe_tokenizer(text: str, tokens: int) -> None:
    assert abs(estimate_tokens(text) - tokens) <= max(2, tokens // 5)


def test_indentation_is_not_counted_as_words() -> None:
    flat = "if x:\nreturn 1\nelse:\nreturn 2\n"
    indented = "if x:\n    return 1\nelse:\n    return 2\n"
    assert estimate_tokens(indented) - estimate_tokens(flat) <= 2


def test_cjk_counts_about_one_token_per_character() -> None:
    text = "策略规定了团队可以使用哪些模型以及每月可以花费多少"  # 25 characters
    assert 15 <= estimate_tokens(text) <= 35


def test_lone_surrogates_do_not_raise() -> None:
    assert estimate_tokens("abc\ud800def") >= 1


@given(st.text())
def test_monotone_under_concatenation_and_never_negative(text: str) -> None:
    n = estimate_tokens(text)
    assert n >= (1 if text else 0)
    # Doubling a text roughly doubles its estimate (the estimate is additive).
    assert estimate_tokens(text + text) <= 2 * n + 1


def test_messages_with_string_and_part_contents() -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Hello there"}, "raw part"]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
    ]
    expected = (
        3 * MESSAGE_OVERHEAD_TOKENS
        + estimate_tokens("You are terse.")
        + estimate_tokens("Hello there")
        + estimate_tokens("raw part")
    )
    assert estimate_messages_tokens(messages) == expected


@pytest.mark.parametrize(
    "messages",
    [None, "text", 42, {"content": "x"}, [], [None, 1, "x", ["content"]]],
)
def test_malformed_messages_count_nothing(messages: object) -> None:
    assert estimate_messages_tokens(messages) == 0


def test_malformed_contents_count_only_the_overhead() -> None:
    messages = [{"content": None}, {"content": 5}, {"content": [{"text": 3}, None, 7]}, {}]
    assert estimate_messages_tokens(messages) == 4 * MESSAGE_OVERHEAD_TOKENS


def test_request_tokens_add_prompt_and_messages() -> None:
    llm: dict[str, Any] = {
        "prompt": "Summarize the report.",
        "messages": [{"role": "user", "content": "And the appendix."}],
    }
    assert estimate_request_tokens(llm) == estimate_tokens(
        "Summarize the report."
    ) + estimate_messages_tokens(llm["messages"])
    assert estimate_request_tokens({}) == 0
    assert estimate_request_tokens({"prompt": 5, "messages": "x"}) == 0
    assert estimate_request_tokens(None) == 0  # type: ignore[arg-type]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(_json)
def test_messages_never_raise(value: object) -> None:
    assert estimate_messages_tokens(value) >= 0
    assert estimate_messages_tokens([value]) >= 0


def _documented_estimate(text: str) -> int:
    """The estimator as docs/primitives.md states it, written plainly."""
    data = text.encode("utf-8", "surrogatepass")
    separators = set(b" \n" + b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    pieces = sum(1 for b in data if b in separators) + 1 - 4 * data.count(b"    ")
    pieces += sum(1 for ch in text if ord(ch) > 127) // 2  # half a piece per non-ASCII char
    return max(1, int((len(data) / 4 + max(pieces, 1)) / 2 + 0.5))


@given(st.text(min_size=1))
def test_estimate_is_the_documented_formula(text: str) -> None:
    assert estimate_tokens(text) == _documented_estimate(text)
