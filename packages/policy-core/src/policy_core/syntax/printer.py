"""IR -> expression text. `parse_expression(to_expression(e)) == e` for every IR the parser makes."""

from __future__ import annotations

import re

from policy_core.ir import (
    Binary,
    Call,
    Expr,
    Index,
    ListExpr,
    Lit,
    Method,
    Neg,
    Not,
    Path,
    flatten,
)

__all__ = ["to_expression"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PRECEDENCE = {
    "or": 1,
    "and": 2,
    "==": 4,
    "!=": 4,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "in": 4,
    "not in": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}
_SYMBOL = {"or": "||", "and": "&&"}
_NOT, _NEG, _POSTFIX, _ATOM = 3, 7, 8, 9


def to_expression(expr: Expr) -> str:
    """Print an IR node as expression text, with the fewest parentheses needed."""
    return _print(expr)


def _precedence(expr: Expr) -> int:
    if isinstance(expr, Binary):
        return _PRECEDENCE[expr.op]
    if isinstance(expr, Not):
        return _NOT
    if isinstance(expr, Neg):
        return _NEG
    if isinstance(expr, Lit) and isinstance(expr.value, int | float) and repr(expr.value)[0] == "-":
        return _NEG  # printed with a leading minus
    if isinstance(expr, Index | Method):
        return _POSTFIX
    return _ATOM


def _wrap(expr: Expr, minimum: int) -> str:
    text = _print(expr)
    return f"({text})" if _precedence(expr) < minimum else text


def _print(expr: Expr) -> str:
    if isinstance(expr, Lit):
        return _literal(expr.value)
    if isinstance(expr, Path):
        return expr.root + "".join(_segment(s) for s in expr.segments)
    if isinstance(expr, Binary) and expr.op in ("and", "or"):
        # Iterative over the left spine: chains can hold hundreds of terms.
        prec = _PRECEDENCE[expr.op]
        first, *rest = flatten(expr, expr.op)
        parts = [_wrap(first, prec), *(_wrap(o, prec + 1) for o in rest)]
        return f" {_SYMBOL[expr.op]} ".join(parts)
    if isinstance(expr, Binary):
        prec = _PRECEDENCE[expr.op]
        op = _SYMBOL.get(expr.op, expr.op)
        # Left-associative: the right operand needs parentheses at equal precedence;
        # comparisons do not chain, so both of their operands do.
        left_min = prec + 1 if prec == 4 else prec
        return f"{_wrap(expr.left, left_min)} {op} {_wrap(expr.right, prec + 1)}"
    if isinstance(expr, Not):
        return "!" + _wrap(expr.operand, _NOT)
    if isinstance(expr, Neg):
        inner = _wrap(expr.operand, _NEG)
        # `- -x`, not `-(-x)`: a space keeps the two signs apart without a parenthesis,
        # which would add a nesting level per sign (100 of them parsed but did not print back
        # under the parser's nesting limit: found by reliability/fuzz.py).
        return "-" + (f" {inner}" if inner.startswith("-") else inner)
    if isinstance(expr, Index):
        return f"{_wrap(expr.target, _POSTFIX)}[{_print(expr.index)}]"
    if isinstance(expr, Method):
        args = ", ".join(_print(a) for a in expr.args)
        return f"{_wrap(expr.target, _POSTFIX)}.{expr.name}({args})"
    if isinstance(expr, Call):
        return f"{expr.name}({', '.join(_print(a) for a in expr.args)})"
    if isinstance(expr, ListExpr):
        return "[" + ", ".join(_print(i) for i in expr.items) + "]"
    pairs = (f"{_literal(k)}: {_print(v)}" for k, v in zip(expr.keys, expr.values, strict=True))
    return "{" + ", ".join(pairs) + "}"


def _segment(segment: str | int) -> str:
    if isinstance(segment, int):
        return f"[{segment}]"
    if _IDENT.match(segment):
        return "." + segment
    return f"[{_literal(segment)}]"


def _literal(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    raise TypeError(f"not a scalar literal: {value!r}")


def _quote(text: str) -> str:
    out = ["'"]
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)
