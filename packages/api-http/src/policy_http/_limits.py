"""Limits on one evaluation context: nesting depth and number of items.

A deep or huge context costs the engine (and the decision log) in proportion;
the API refuses it with 422 before evaluating. The walk stops at the first
excess, so its cost is bounded by the limits, not by the context.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ContextTooLarge", "check_context"]


class ContextTooLarge(Exception):
    """The context exceeds a limit; the message says which and by how much it may go."""


def check_context(context: dict[str, Any], max_depth: int, max_items: int) -> None:
    """Raise ContextTooLarge when `context` nests deeper or holds more items than allowed.

    Depth counts containers: `{}` is depth 1, `{"a": []}` depth 2. Items count
    every key and every value (a scalar, a list or an object alike).
    """
    budget = [max_items]
    try:
        _walk(context, 1, max_depth, budget)
    except _TooMany:
        raise ContextTooLarge(f"the context holds more than {max_items} keys and values") from None


class _TooMany(Exception):
    pass


def _walk(value: Any, depth: int, max_depth: int, budget: list[int]) -> None:
    if depth > max_depth:
        raise ContextTooLarge(f"the context nests deeper than {max_depth} levels")
    if isinstance(value, dict):
        budget[0] -= 2 * len(value)
        if budget[0] < 0:
            raise _TooMany
        for item in value.values():
            if isinstance(item, dict | list):
                _walk(item, depth + 1, max_depth, budget)
    else:  # a list
        budget[0] -= len(value)
        if budget[0] < 0:
            raise _TooMany
        for item in value:
            if isinstance(item, dict | list):
                _walk(item, depth + 1, max_depth, budget)
