"""The operators and functions of the language as plain functions over JSON values (spec 4.4, 4.5).

The expression compiler specialises the common cases around these; these are
the general, always-correct versions.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from policy_core.compiler.runtime import EvalError, json_eq, type_name

__all__ = ["ARITHMETIC", "COMPARE", "contains", "has_permission", "is_number", "membership"]


def is_number(value: object) -> bool:
    t = type(value)
    return t is int or t is float


def _compare(op: Callable[[Any, Any], bool], symbol: str) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        ta, tb = type(a), type(b)
        if (ta is str and tb is str) or ((ta is int or ta is float) and (tb is int or tb is float)):
            return op(a, b)
        raise EvalError(f"cannot compare a {type_name(a)} {symbol} a {type_name(b)}")

    return compare


COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": _compare(operator.lt, "<"),
    "<=": _compare(operator.le, "<="),
    ">": _compare(operator.gt, ">"),
    ">=": _compare(operator.ge, ">="),
}


def _add(a: Any, b: Any) -> Any:
    if is_number(a) and is_number(b):
        return a + b
    if type(a) is str and type(b) is str:
        return a + b
    if type(a) is list and type(b) is list:
        return [*a, *b]
    raise EvalError(f"cannot add a {type_name(a)} and a {type_name(b)}")


def _numeric(op: Callable[[Any, Any], Any], symbol: str) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if not (is_number(a) and is_number(b)):
            raise EvalError(f"'{symbol}' needs numbers, got a {type_name(a)} and a {type_name(b)}")
        if symbol in "/%" and b == 0:
            raise EvalError("division by zero")
        return op(a, b)

    return apply


ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add,
    "-": _numeric(operator.sub, "-"),
    "*": _numeric(operator.mul, "*"),
    "/": _numeric(operator.truediv, "/"),
    "%": _numeric(operator.mod, "%"),
}


def membership(x: Any, y: Any) -> bool:
    """`x in y` (spec 4.4)."""
    if y is None:
        return False
    if isinstance(y, list):
        return any(json_eq(x, item) for item in y)
    if isinstance(y, Mapping):
        return type(x) is str and x in y
    if type(y) is str:
        if type(x) is not str:
            raise EvalError(f"'in' a string needs a string on the left, got a {type_name(x)}")
        return x in y
    raise EvalError(f"'in' needs a list, map or string on the right, got a {type_name(y)}")


def contains(receiver: Any, item: Any) -> bool:
    """`receiver.contains(item)`: substring, list element, or map key; false on null."""
    if receiver is None:
        return False
    if type(receiver) is str:
        if type(item) is not str:
            raise EvalError(f"contains() on a string needs a string, got a {type_name(item)}")
        return item in receiver
    if isinstance(receiver, list | Mapping):
        return membership(item, receiver)
    raise EvalError(f"contains() is not defined on a {type_name(receiver)}")


def has_permission(subject: Any, permission: Any) -> bool:
    """`X.has_permission(p)`: exact grant, `q.*` for everything under `q.`, or `*`."""
    if type(permission) is not str:
        raise EvalError(f"has_permission() needs a string, got a {type_name(permission)}")
    granted = (
        subject.get("permissions")
        if type(subject) is dict or isinstance(subject, Mapping)
        else None
    )
    if not isinstance(granted, list):
        return False
    for grant in granted:
        if type(grant) is not str:
            continue
        if grant == permission or grant == "*":
            return True
        if (
            grant.endswith(".*")
            and len(permission) >= len(grant)
            and permission.startswith(grant[:-1])
        ):
            return True
    return False
