"""What compiled closures share at run time: the evaluation environment and value semantics.

Values are JSON values (None, bool, int, float, str, list, dict). `bool` is
never a number here, unlike in Python, so every check tests the exact type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy_core.errors import EvalError

__all__ = ["Env", "EvalError", "as_bool", "json_eq", "type_name"]


class Env:
    """One evaluation: the caller's context (read only), the clock, facts and a memo."""

    __slots__ = ("ctx", "facts", "memo", "now")

    def __init__(
        self, ctx: Mapping[str, Any], now: float | None, facts: Mapping[Any, Any] | None
    ) -> None:
        self.ctx = ctx
        self.now = now
        self.facts = facts
        self.memo: dict[Any, Any] = {}


_NAMES = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "list",
    tuple: "list",
    dict: "map",
}


def type_name(value: object) -> str:
    name = _NAMES.get(type(value))
    if name is not None:
        return name
    if isinstance(value, Mapping):
        return "map"
    return type(value).__name__


def as_bool(value: object) -> bool:
    """A condition must produce a boolean; null counts as false (spec 4.4)."""
    if value is True or value is False:
        return value
    if value is None:
        return False
    raise EvalError(f"expected a boolean, got a {type_name(value)}")


def json_eq(a: object, b: object) -> bool:
    """Deep equality on JSON values: 1 == 1.0, but true != 1 and '1' != 1."""
    ta, tb = type(a), type(b)
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a == b
    if ta is str or tb is str:
        return ta is tb and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_eq(a[k], b[k]) for k in a)
    return a is None and b is None
