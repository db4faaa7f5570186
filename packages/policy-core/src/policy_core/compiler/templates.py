"""Rendering of `reason` templates: strings bare, other values as compact JSON, errors as `<error>`."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from policy_core.compiler.expr import CompileContext, Fn, compile_expr
from policy_core.compiler.runtime import Env, EvalError
from policy_core.language.templates import TemplatePart

__all__ = ["Renderer", "compile_template"]

Renderer = Callable[[Env], str]
_encode = msgspec.json.encode


def compile_template(parts: tuple[TemplatePart, ...], cc: CompileContext) -> Renderer | str:
    """A constant string when there is no hole, else a renderer."""
    if all(isinstance(p, str) for p in parts):
        return "".join(p for p in parts if isinstance(p, str))
    pieces: list[str | Fn] = [p if isinstance(p, str) else compile_expr(p, cc) for p in parts]

    def render(env: Env) -> str:
        out: list[str] = []
        for piece in pieces:
            if isinstance(piece, str):
                out.append(piece)
                continue
            try:
                value = piece(env)
                out.append(value if type(value) is str else _encode(value).decode())
            except (EvalError, TypeError, ValueError, RecursionError, msgspec.EncodeError):
                out.append("<error>")
        return "".join(out)

    return render
