from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, strategies as st
from policy_core.primitives.pii import PII_TYPES, contains_pii
from policy_core.primitives.redact import (
    REDACT_PATTERNS,
    REDACTED,
    redact_context,
    redact_text,
)

TEXT = "mail john@x.org or call +44 20 7946 0958, card 4111 1111 1111 1111."


def test_redact_text_all_types() -> None:
    assert redact_text(TEXT) == (
        "mail [REDACTED:email] or call [REDACTED:phone], card [REDACTED:credit_card]."
    )


def test_redact_text_selected_types_and_placeholder() -> None:
    assert redact_text(TEXT, types={"email"}) == (
        "mail [REDACTED:email] or call +44 20 7946 0958, card 4111 1111 1111 1111."
    )
    assert redact_text(TEXT, types=["phone", "credit_card"], placeholder="<{type}:{x}>") == (
        "mail john@x.org or call <phone:{x}>, card <credit_card:{x}>."
    )
    assert redact_text(TEXT, types=[]) == TEXT


def test_redact_text_edge_cases() -> None:
    assert redact_text("") == ""
    assert redact_text("nothing here") == "nothing here"
    assert redact_text("é john@x.org ü") == "é [REDACTED:email] ü"
    with pytest.raises(ValueError, match="unknown PII type"):
        redact_text(TEXT, types={"emails"})


def make_context() -> dict[str, Any]:
    return {
        "llm": {
            "model": "gpt-4o",
            "prompt": "I am john@x.org",
            "max_tokens": 100,
            "messages": [
                {"role": "user", "content": "SSN 123-45-6789"},
                {"role": "user", "content": [{"type": "text", "text": "ip 10.0.0.1"}]},
            ],
        },
        "user": {"id": "u1", "email": "john@x.org"},
        "request": {"tags": ["a@b.io", "plain"], "ip_address": "10.0.0.2"},
        "metadata": {"x-key": "call +1 415 555 2671", "n": 4111111111111111},
    }


def test_redact_context_paths() -> None:
    ctx = make_context()
    out = redact_context(
        ctx,
        ["llm.prompt", "llm.messages", "metadata['x-key']", "request.tags[0]", "missing.path"],
    )
    assert out["llm"]["prompt"] == "I am [REDACTED:email]"
    assert out["llm"]["messages"] == [
        {"role": "user", "content": "SSN [REDACTED:ssn]"},
        {"role": "user", "content": [{"type": "text", "text": "ip [REDACTED:ip_address]"}]},
    ]
    assert out["metadata"]["x-key"] == "call [REDACTED:phone]"
    assert out["request"]["tags"] == ["[REDACTED:email]", "plain"]
    # Untouched paths keep their values; the input is unchanged.
    assert out["user"] == ctx["user"]
    assert out["request"]["ip_address"] == "10.0.0.2"
    assert ctx == make_context()


def test_redact_context_single_type_pattern() -> None:
    out = redact_context(make_context(), ["llm", "user"], pattern="email")
    assert out["llm"]["prompt"] == "I am [REDACTED:email]"
    assert out["llm"]["messages"][0]["content"] == "SSN 123-45-6789"
    assert out["user"] == {"id": "u1", "email": "[REDACTED:email]"}
    assert out["llm"]["max_tokens"] == 100


@pytest.mark.parametrize("pattern", ["all", "*"])
def test_redact_context_all_replaces_whole_values(pattern: str) -> None:
    out = redact_context(make_context(), ["llm.messages", "user.email", "metadata.n"], pattern)
    assert out["llm"]["messages"] == REDACTED
    assert out["user"]["email"] == REDACTED
    assert out["metadata"]["n"] == REDACTED
    assert out["llm"]["prompt"] == "I am john@x.org"


def test_redact_context_ignores_missing_and_null_paths() -> None:
    ctx: dict[str, Any] = {"a": {"b": None}, "l": [1], "s": "text"}
    for pattern in ("pii", "all"):
        out = redact_context(ctx, ["a.b", "a.c", "l[3]", "l[-1]", "s.x", "s[0]", "zz"], pattern)
        assert out == ctx


def test_redact_context_numbers_and_keys_are_kept() -> None:
    ctx = {"m": {"john@x.org": 4111111111111111, "flag": True, "none": None}}
    assert redact_context(ctx, ["m"]) == ctx


def test_redact_context_result_is_a_deep_copy() -> None:
    ctx = make_context()
    out = redact_context(ctx, [])
    assert out == ctx
    out["llm"]["messages"][0]["content"] = "changed"
    out["request"]["tags"].append("x")
    assert ctx == make_context()


def test_redact_context_errors() -> None:
    with pytest.raises(ValueError, match="unknown redact pattern"):
        redact_context({}, ["a"], pattern="secrets")
    with pytest.raises(ValueError, match="position"):
        redact_context({}, ["a..b"])


def test_redact_patterns() -> None:
    assert {"pii", "all", "*", *PII_TYPES} == REDACT_PATTERNS


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=8),
    st.sampled_from(["john@x.org", "call +44 20 7946 0958", "4111 1111 1111 1111", "10.1.2.3"]),
)
_json = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("abcd"), inner, max_size=4)
    ),
    max_leaves=20,
)
_fields = st.lists(
    st.sampled_from(["a", "b", "a.b", "a[0]", "b['c']", "c[1].d", "d", "a.a.a", "b[0][0]"]),
    max_size=4,
)


@given(
    st.dictionaries(st.sampled_from("abcd"), _json, max_size=4),
    _fields,
    st.sampled_from(sorted(REDACT_PATTERNS)),
)
def test_redact_context_never_mutates_input(
    ctx: dict[str, Any], fields: list[str], pattern: str
) -> None:
    before = copy.deepcopy(ctx)
    out = redact_context(ctx, fields, pattern)
    assert ctx == before
    assert set(out) == set(ctx)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@given(st.dictionaries(st.sampled_from("abcd"), _json, max_size=4))
def test_redacting_every_root_leaves_no_pii(ctx: dict[str, Any]) -> None:
    out = redact_context(ctx, list(ctx), "pii")
    assert not any(contains_pii(s) for s in _strings(out))
