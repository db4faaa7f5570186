"""`reason` templates: literal text with `{{ expr }}` holes (spec 4.6)."""

from __future__ import annotations

from policy_core.ir import Expr
from policy_core.language.lexer import ExprSyntaxError
from policy_core.language.parser import RegexCheck, parse_expression

__all__ = ["TemplatePart", "parse_template"]

TemplatePart = str | Expr


def parse_template(text: str, *, check_regex: RegexCheck | None = None) -> tuple[TemplatePart, ...]:
    """Split a reason into text and parsed expressions; offsets in errors are into `text`."""
    parts: list[TemplatePart] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            break
        end = text.find("}}", start + 2)
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
