"""`reason` templates: literal text with `{{ expr }}` holes (spec 4.6)."""

from __future__ import annotations

import functools

from policy_core.ir import Expr
from policy_core.syntax.lexer import ExprSyntaxError
from policy_core.syntax.parser import RegexCheck, parse_expression

__all__ = ["TemplatePart", "parse_template"]

TemplatePart = str | Expr


def parse_template(text: str, *, check_regex: RegexCheck | None = None) -> tuple[TemplatePart, ...]:
    """Split a reason into text and parsed expressions; offsets in errors are into `text`.

    The parts are immutable, so a reason seen before comes from a bounded cache
    (the loader, its phase checks and the compiler each read every reason).
    """
    return _parse_template_cached(text, check_regex)


@functools.lru_cache(maxsize=4096)
def _parse_template_cached(text: str, check_regex: RegexCheck | None) -> tuple[TemplatePart, ...]:
    parts: list[TemplatePart] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            break
        end = _hole_end(text, start + 2)
        if end < 0:
            raise ExprSyntaxError(start, "unclosed '{{' in template; close it with '}}'")
        if start > pos:
            parts.append(text[pos:start])
        source = text[start + 2 : end]
        if not source.strip():
            raise ExprSyntaxError(start, "empty '{{ }}' in template")
        try:
            parts.append(parse_expression(source, check_regex=check_regex))
        except ExprSyntaxError as exc:
            raise ExprSyntaxError(start + 2 + exc.offset, exc.message) from None
        pos = end + 2
    if pos < len(text):
        parts.append(text[pos:])
    return tuple(parts)


def _hole_end(text: str, pos: int) -> int:
    """Index of the `}}` closing a hole that starts at `pos`, or -1.

    A `}}` inside a string literal (`{{ "}}" }}`) or closing a map literal
    (`{{ {'a': {'b': 1}} }}`) does not end the hole.
    """
    depth = 0
    i, n = pos, len(text)
    while i < n:
        ch = text[i]
        if ch == "'" or ch == '"':
            i += 1
            while i < n and text[i] != ch:
                i += 2 if text[i] == "\\" else 1
            i += 1
            continue
        if ch == "}" and depth == 0 and text.startswith("}}", i):
            return i
        if ch in "([{":
            depth += 1
        elif ch in ")]}" and depth > 0:
            depth -= 1
        i += 1
    return -1
