"""For `trace`: the first sub-expression that made a condition false, in expression form."""

from __future__ import annotations

from typing import Any

from policy_core.compiler.context import CompileContext
from policy_core.compiler.expr import compile_condition
from policy_core.compiler.regex import RegexTable
from policy_core.compiler.runtime import Env, EvalError
from policy_core.ir import Binary, Expr
from policy_core.syntax.printer import to_expression

__all__ = ["first_failing"]


def _holds(node: Expr, env: Env) -> bool:
    cc = CompileContext(RegexTable())
    fn = compile_condition(node, cc)
    cc.regexes.build()
    # A fresh memo: the regex-set memo of the real evaluation is keyed by another table.
    probe = Env(env.ctx, env.now, env.facts)
    try:
        return bool(fn(probe))
    except EvalError:
        return False


def first_failing(node: Expr, env: Env) -> str:
    """Follow `&&` left to right into the conjunct that was false; anything else is itself."""
    current: Any = node
    while isinstance(current, Binary) and current.op == "and":
        current = current.left if not _holds(current.left, env) else current.right
    return to_expression(current)
