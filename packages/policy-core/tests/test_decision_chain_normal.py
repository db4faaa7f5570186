"""The chain's number normalisation (`decision_chain._normal`) on generated JSON values.

`_normal` skips strings, ints, bools and None without a call; this compares it with
the plain recursive definition (every value visited) that it replaced, on values
holding what it changes: negative zero, floats from 1e16 up, NaN and the infinities.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import msgspec
from hypothesis import given, settings, strategies as st
from policy_core.services.decision_chain import _normal


def _definition(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value == 0.0:
            return 0.0
        if abs(value) >= 1e16:
            return int(Decimal(repr(value)))
        return value
    if isinstance(value, dict):
        return {k: _definition(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_definition(v) for v in value]
    return value


_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-0.0, 0.0, 1e16, -1e16, 1.5e300, 1e-7, 123456789012345678.0]),
)
_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), _floats, st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(_values)
def test_normal_is_the_definition(value: Any) -> None:
    got, expected = _normal(value), _definition(value)
    assert msgspec.json.encode(got) == msgspec.json.encode(expected)
    assert type(got) is type(expected)


def test_the_changed_values() -> None:
    assert _normal({"a": [-0.0, math.nan, 1e16, "x", True]}) == {
        "a": [0.0, None, 10**16, "x", True]
    }
