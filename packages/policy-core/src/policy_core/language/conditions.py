"""Both condition forms -> IR: expression strings (positions mapped into the file) and trees."""

from __future__ import annotations

from typing import Any

from policy_core.ir import Binary, Call, Expr, ListExpr, Lit, MapExpr, Method, Not, Path
from policy_core.language.source import SourceText, position, to_plain
from policy_core.regex import check_regex, quote_pattern
from policy_core.syntax.lexer import ExprSyntaxError
from policy_core.syntax.parser import parse_expression

__all__ = ["ConditionError", "literal_ir", "parse_condition", "parse_path_text"]

_COMPARE = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "in": "in"}
_COMPARE["not_in"] = "not in"
_METHOD = {"contains": "contains", "matches": "matches", "starts_with": "starts_with"}
_METHOD["ends_with"] = "ends_with"
LEAF_OPERATORS = frozenset([*_COMPARE, *_METHOD, "not_contains", "exists"])


class ConditionError(Exception):
    """A problem at a 0-based file position."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message


def parse_expression_at(src: SourceText, text: str, line: int, col: int) -> Expr:
    try:
        return parse_expression(text, check_regex=check_regex)
    except ExprSyntaxError as exc:
        at_line, at_col = src.scalar_offset(line, col, exc.offset)
        raise ConditionError(at_line, at_col, exc.message) from None


def parse_path_text(src: SourceText, text: Any, line: int, col: int, what: str) -> Path:
    if not isinstance(text, str):
        raise ConditionError(line, col, f"{what} must be a path string such as llm.model")
    expr = parse_expression_at(src, text, line, col)
    if not isinstance(expr, Path):
        raise ConditionError(
            line, col, f"{what} {text!r} is not a path (e.g. user.id, a.b[0]['k'])"
        )
    return expr


def literal_ir(value: Any) -> Expr:
    """A JSON value as IR: lists and maps become ListExpr/MapExpr of literals."""
    if isinstance(value, list):
        return ListExpr(items=tuple(literal_ir(v) for v in value))
    if isinstance(value, dict):
        return MapExpr(keys=tuple(value), values=tuple(literal_ir(v) for v in value.values()))
    return Lit(value=value)


def parse_condition(src: SourceText, node: Any, line: int, col: int) -> Expr:
    """`node` is the raw ruamel value at (line, col): a string, a bool or a tree."""
    if isinstance(node, bool):
        return Lit(value=node)
    if isinstance(node, str):
        if not node.strip():
            raise ConditionError(line, col, "empty condition; remove it to match always")
        return parse_expression_at(src, str(node), line, col)
    if isinstance(node, dict):
        return _tree(src, node, line, col)
    raise ConditionError(line, col, "a condition is an expression string or a condition tree")


def _pos(node: Any, key: str, default: tuple[int, int]) -> tuple[int, int]:
    return position(node, "value", key, default)


def _tree(src: SourceText, node: Any, line: int, col: int) -> Expr:
    operator = node.get("operator")
    if operator in ("and", "or", "not"):
        return _combinator(src, node, str(operator), line, col)
    if operator not in LEAF_OPERATORS:
        at = _pos(node, "operator", (line, col))
        known = ", ".join(["and", "or", "not", *sorted(LEAF_OPERATORS)])
        raise ConditionError(*at, f"unknown condition operator {operator!r} (one of: {known})")
    allowed = {"operator", "field", "value"}
    _unknown_keys(node, allowed, line, col)
    if "field" not in node:
        raise ConditionError(line, col, f"condition operator {operator!r} needs a 'field'")
    fline, fcol = _pos(node, "field", (line, col))
    field = parse_path_text(src, node["field"], fline, fcol, "field")
    if operator == "exists":
        return Call(name="has", args=(field,))
    if "value" not in node:
        raise ConditionError(line, col, f"condition operator {operator!r} needs a 'value'")
    value = to_plain(node["value"])
    if operator == "matches":
        if not isinstance(value, str):
            raise ConditionError(
                *_pos(node, "value", (line, col)), "matches needs a string pattern"
            )
        problem = check_regex(value)
        if problem is not None:
            raise ConditionError(
                *_pos(node, "value", (line, col)),
                f"invalid regular expression {quote_pattern(value)}: {problem}",
            )
    arg = literal_ir(value)
    if operator in _COMPARE:
        return Binary(op=_COMPARE[operator], left=field, right=arg)
    if operator == "not_contains":
        return Not(operand=Method(target=field, name="contains", args=(arg,)))
    return Method(target=field, name=_METHOD[operator], args=(arg,))


def _combinator(src: SourceText, node: Any, operator: str, line: int, col: int) -> Expr:
    _unknown_keys(node, {"operator", "conditions"}, line, col)
    items = node.get("conditions")
    if not isinstance(items, list) or not items:
        raise ConditionError(line, col, f"'{operator}' needs a non-empty 'conditions' list")
    if operator == "not" and len(items) != 1:
        raise ConditionError(line, col, f"'not' takes exactly one condition, got {len(items)}")
    parsed: list[Expr] = []
    for index, item in enumerate(items):
        iline, icol = position(items, "item", index, (line, col))
        parsed.append(parse_condition(src, item, iline, icol))
    if operator == "not":
        return Not(operand=parsed[0])
    result = parsed[0]
    for item in parsed[1:]:
        result = Binary(op=operator, left=result, right=item)
    return result


def _unknown_keys(node: Any, allowed: set[str], line: int, col: int) -> None:
    for key in node:
        if key not in allowed:
            kline, kcol = position(node, "key", key, (line, col))
            raise ConditionError(
                kline,
                kcol,
                f"unknown key {key!r} in condition (allowed: {', '.join(sorted(allowed))})",
            )
