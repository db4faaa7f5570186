"""Limits on one evaluation context: nesting depth and number of items.

A deep or huge context costs the engine (and the decision log) in proportion;
the API refuses it with 422 before evaluating. The walk stops at the first
excess, so its cost is bounded by the limits, not by the context.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ContextTooLarge", "check_context", "within_limits"]


def within_limits(body: bytes, max_depth: int, max_items: int) -> bool:
    """True when the raw JSON body cannot hold a context beyond the limits.

    An upper bound counted in C: nesting cannot exceed the number of `{`/`[`
    bytes, and keys + values cannot exceed the separators (`,` `:`) plus the
    containers plus one. Bytes inside strings only loosen the bound, so True
    is always right; False only means "walk the decoded context to know".
    """
    containers = body.count(b"{") + body.count(b"[")
    if containers > max_depth:
        return False
    return body.count(b",") + body.count(b":") + containers + 1 <= max_items


class ContextTooLarge(Exception):
    """The context exceeds a limit; the message says which and by how much it may go."""


def check_context(context: dict[str, Any], max_depth: int, max_items: int) -> None:
    """Raise ContextTooLarge when `context` nests deeper or holds more items than allowed.

    Depth counts containers: `{}` is depth 1, `{"a": []}` depth 2. Items count
    every key and every value (a scalar, a list or an object alike). Iterative,
    with exact type checks: decoded JSON holds only dict, list and scalars.
    """
    budget = max_items
    stack: list[tuple[Any, int]] = [(context, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if depth > max_depth:
            raise ContextTooLarge(f"the context nests deeper than {max_depth} levels")
        if type(value) is dict:
            budget -= 2 * len(value)
            children: Any = value.values()
        else:
            budget -= len(value)
            children = value
        if budget < 0:
            raise ContextTooLarge(f"the context holds more than {max_items} keys and values")
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth + 1))
