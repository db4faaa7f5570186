"""Rendering of `reason` templates: strings bare, other values as compact JSON, errors as `<error>`."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from policy_core.compiler.context import CompileContext
from policy_core.compiler.expr import compile_expr
from policy_core.compiler.runtime import Env, EvalError
from policy_core.syntax.templates import TemplatePart

__all__ = ["Renderer", "compile_template"]

Renderer = Callable[[Env], str]
_encode = msgspec.json.encode


def compile_template(parts: tuple[TemplatePart, ...], cc: CompileContext) -> Renderer | str:
    """A constant string when there is no hole, else a renderer."""
    if all(isinstance(p, str) for p in parts):
        return "".join(p for p in parts if isinstance(p, str))
    # The text with a placeholder per hole; rendering fills only the holes.
    text = [p if isinstance(p, str) else "" for p in parts]
    holes = tuple((i, compile_expr(p, cc)) for i, p in enumerate(parts) if not isinstance(p, str))

    def render(env: Env) -> str:
        out = text.copy()
        for index, piece in holes:
            try:
                value = piece(env)
                out[index] = value if type(value) is str else _encode(value).decode()
            except (EvalError, TypeError, ValueError, RecursionError, msgspec.EncodeError):
                out[index] = "<error>"
        return "".join(out)

    return render
