"""The condition IR: what expressions and condition trees both compile to.

Nodes are frozen msgspec Structs, compared by value, so that "print then
parse gives the same IR" is a plain `==`. Literal lists and maps are
`ListExpr`/`MapExpr` of `Lit`s: `Lit` only ever holds a scalar.
Unary minus applied to a numeric literal is folded into the literal.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

__all__ = [
    "BINARY_OPS",
    "Binary",
    "Call",
    "Expr",
    "Index",
    "ListExpr",
    "Lit",
    "MapExpr",
    "Method",
    "Neg",
    "Not",
    "Path",
    "flatten",
]


class _Node(msgspec.Struct, frozen=True, tag_field="node", array_like=False, gc=False):
    pass


class Lit(_Node, tag="lit", frozen=True):
    """A scalar literal: None, bool, int, float or str."""

    value: Any


class Path(_Node, tag="path", frozen=True):
    """A static path: `root` followed by member names (str) and list indexes (int)."""

    root: str
    segments: tuple[str | int, ...] = ()


class Index(_Node, tag="index", frozen=True):
    """`target[index]` where the target is not a static path or the index is computed."""

    target: Expr
    index: Expr


class Call(_Node, tag="call", frozen=True):
    """A global function (`size`, `has`, ...) or a fact function (`rate_limit.count`, ...)."""

    name: str
    args: tuple[Expr, ...] = ()


class Method(_Node, tag="method", frozen=True):
    """`target.name(args)`: string/list/map methods and subject helpers."""

    target: Expr
    name: str
    args: tuple[Expr, ...] = ()


class Not(_Node, tag="not", frozen=True):
    operand: Expr


class Neg(_Node, tag="neg", frozen=True):
    operand: Expr


class Binary(_Node, tag="binary", frozen=True):
    """`op` is one of BINARY_OPS; `and`/`or` short-circuit."""

    op: str
    left: Expr
    right: Expr


class ListExpr(_Node, tag="list", frozen=True):
    items: tuple[Expr, ...] = ()


class MapExpr(_Node, tag="map", frozen=True):
    keys: tuple[str, ...] = ()
    values: tuple[Expr, ...] = ()


Expr: TypeAlias = Lit | Path | Index | Call | Method | Not | Neg | Binary | ListExpr | MapExpr


def flatten(node: Expr, op: str) -> list[Expr]:
    """The operands of a left-nested chain of `op` (`a && b && c`), without recursion:
    machine-written policies hold chains of hundreds of terms."""
    spine: list[Expr] = []
    while isinstance(node, Binary) and node.op == op:
        spine.append(node.right)
        node = node.left
    spine.append(node)
    spine.reverse()
    return spine


BINARY_OPS = frozenset(
    {"or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "+", "-", "*", "/", "%"}
)
