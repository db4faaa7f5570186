"""IR -> closures `fn(env) -> value`: compiled once per policy change, never walked per request.

This is the reference form of a condition. The engine runs it under `trace`,
for conditions too deep for generated code, and the validator's warnings and
`explain` use it; the hot path runs codegen.py, its hand-written fast copy.
Parity tests:
packages/policy-core/tests/test_core_properties.py::test_generated_code_agrees_with_the_closures
(every decision field, random policies) and
::test_compiled_expressions_agree_with_the_reference (these closures against
the test's own interpreter of spec 4).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from policy_core.compiler import values as ops
from policy_core.compiler.context import CompileContext, FactCall, Fn
from policy_core.compiler.facts import DERIVED_FACTS, RESPONSE_FACTS, derived_fact, response_fact
from policy_core.compiler.methods import compile_call, compile_fact_call, compile_method
from policy_core.compiler.runtime import Env, EvalError, as_bool, json_eq, type_name
from policy_core.ir import (
    Binary,
    Call,
    Expr,
    Index,
    ListExpr,
    Lit,
    MapExpr,
    Method,
    Neg,
    Not,
    Path,
    flatten,
)

__all__ = ["CompileContext", "Fn", "compile_condition", "compile_expr", "returns_bool"]

_BOOL_METHODS = frozenset(
    {"contains", "starts_with", "ends_with", "matches", "has_role", "has_permission"}
)
_BOOL_CALLS = frozenset({"has", "contains_pii"})
_WINDOWS = frozenset({"1s", "1m", "1h", "1d"})
_PERIODS = frozenset({"day", "month"})


def returns_bool(node: Expr) -> bool:
    """True when the node always yields a boolean (or raises), so no truthiness check is needed."""
    if isinstance(node, Not):
        return True
    if isinstance(node, Binary):
        return node.op not in ops.ARITHMETIC
    if isinstance(node, Method):
        return node.name in _BOOL_METHODS
    if isinstance(node, Call):
        return node.name in _BOOL_CALLS
    return isinstance(node, Lit) and isinstance(node.value, bool)


def compile_condition(node: Expr, cc: CompileContext) -> Fn:
    """A condition: the result must be a boolean (null counts as false)."""
    fn = compile_expr(node, cc)
    if returns_bool(node):
        return fn
    return lambda env: as_bool(fn(env))


def compile_expr(node: Expr, cc: CompileContext) -> Fn:
    if isinstance(node, Lit):
        value = node.value
        return lambda env: value
    if isinstance(node, Path):
        return _path(node, cc)
    if isinstance(node, Binary):
        return _binary(node, cc)
    if isinstance(node, Not):
        inner = compile_condition(node.operand, cc)
        return lambda env: not inner(env)
    if isinstance(node, Neg):
        return _neg(compile_expr(node.operand, cc))
    if isinstance(node, Method):
        return _method(node, cc)
    if isinstance(node, Call):
        return _call(node, cc)
    if isinstance(node, Index):
        target, index = compile_expr(node.target, cc), compile_expr(node.index, cc)
        return lambda env: path_step(target(env), index(env))
    if isinstance(node, ListExpr):
        items = tuple(compile_expr(i, cc) for i in node.items)
        return lambda env: [item(env) for item in items]
    assert isinstance(node, MapExpr)
    keys, vals = node.keys, tuple(compile_expr(v, cc) for v in node.values)
    return lambda env: {k: v(env) for k, v in zip(keys, vals, strict=True)}


# --- paths ---------------------------------------------------------------


def path_step(value: Any, key: Any) -> Any:
    """One path step with the spec 4.2 semantics: anything odd gives null, never an error."""
    if type(key) is str:
        return value.get(key) if isinstance(value, Mapping) else None
    if type(key) is int and isinstance(value, list) and 0 <= key < len(value):
        return value[key]
    return None


def _path(node: Path, cc: CompileContext) -> Fn:
    root, segs = node.root, node.segments
    if root == "llm" and segs and segs[0] in DERIVED_FACTS:
        name = str(segs[0])
        cc.derived.add(name)
        rest = segs[1:]
        if not rest:
            return lambda env: derived_fact(env, name)
        return lambda env: _walk(derived_fact(env, name), rest)
    if root == "response" and segs and segs[0] in RESPONSE_FACTS:
        fact = str(segs[0])
        tail = segs[1:]
        if not tail:
            return lambda env: response_fact(env, fact)
        return lambda env: _walk(response_fact(env, fact), tail)
    if not segs:
        return lambda env: env.ctx.get(root)
    if all(type(s) is str for s in segs):
        if len(segs) == 1:
            (a,) = segs

            def path1(env: Env) -> Any:
                v = env.ctx.get(root)
                return v.get(a) if type(v) is dict else path_step(v, a)

            return path1
        if len(segs) == 2:
            a, b = segs

            def path2(env: Env) -> Any:
                v = env.ctx.get(root)
                v = v.get(a) if type(v) is dict else path_step(v, a)
                return v.get(b) if type(v) is dict else path_step(v, b)

            return path2
    return lambda env: _walk(env.ctx.get(root), segs)


def _walk(value: Any, segs: tuple[str | int, ...]) -> Any:
    for seg in segs:
        value = path_step(value, seg)
        if value is None:
            return None
    return value


# --- operators -----------------------------------------------------------


def _binary(node: Binary, cc: CompileContext) -> Fn:
    op = node.op
    if op == "and" or op == "or":
        operands = tuple(compile_condition(o, cc) for o in flatten(node, op))
        if len(operands) == 2:
            left, right = operands
            if op == "and":
                return lambda env: left(env) and right(env)
            return lambda env: left(env) or right(env)
        return _all(operands) if op == "and" else _any(operands)
    if op in ("==", "!="):
        eq = _equality(node, cc)
        if op == "==":
            return eq
        return lambda env: not eq(env)
    if op in ("in", "not in"):
        member = _membership(node, cc)
        if op == "in":
            return member
        return lambda env: not member(env)
    left, right = compile_expr(node.left, cc), compile_expr(node.right, cc)
    if op in ops.COMPARE:
        return _comparison(op, node, left, right)
    arith = ops.ARITHMETIC[op]
    return lambda env: arith(left(env), right(env))


def _all(operands: tuple[Fn, ...]) -> Fn:
    def conjunction(env: Env) -> bool:
        return all(operand(env) for operand in operands)

    return conjunction


def _any(operands: tuple[Fn, ...]) -> Fn:
    def disjunction(env: Env) -> bool:
        return any(operand(env) for operand in operands)

    return disjunction


def _equality(node: Binary, cc: CompileContext) -> Fn:
    lit, other = _literal_side(node)
    if lit is not None and other is not None:
        fn = compile_expr(other, cc)
        value = lit.value
        if type(value) is str:
            return lambda env: fn(env) == value
        if value is None or type(value) is bool:
            return lambda env: fn(env) is value
        if type(value) is int or type(value) is float:
            return lambda env: ops.is_number(v := fn(env)) and v == value
    left, right = compile_expr(node.left, cc), compile_expr(node.right, cc)
    return lambda env: json_eq(left(env), right(env))


def _literal_side(node: Binary) -> tuple[Lit | None, Expr | None]:
    if isinstance(node.right, Lit):
        return node.right, node.left
    if isinstance(node.left, Lit):
        return node.left, node.right
    return None, None


def _membership(node: Binary, cc: CompileContext) -> Fn:
    left = compile_expr(node.left, cc)
    items = node.right.items if isinstance(node.right, ListExpr) else None
    if items is not None and items and all(isinstance(i, Lit) for i in items):
        scalars = [i.value for i in items if isinstance(i, Lit)]
        if all(type(s) is str for s in scalars):
            strings = frozenset(scalars)
            return lambda env: type(v := left(env)) is str and v in strings
        if all(ops.is_number(s) for s in scalars):
            numbers = frozenset(scalars)
            return lambda env: ops.is_number(v := left(env)) and v in numbers
    right = compile_expr(node.right, cc)
    return lambda env: ops.membership(left(env), right(env))


def _comparison(op: str, node: Binary, left: Fn, right: Fn) -> Fn:
    compare = ops.COMPARE[op]
    if isinstance(node.right, Lit) and ops.is_number(node.right.value):
        limit = node.right.value
        fast: Callable[[Any], bool] = {
            "<": lambda a: a < limit,
            "<=": lambda a: a <= limit,
            ">": lambda a: a > limit,
            ">=": lambda a: a >= limit,
        }[op]

        def against_number(env: Env) -> bool:
            a = left(env)
            t = type(a)
            if t is int or t is float:
                return bool(fast(a))
            return compare(a, limit)

        return against_number
    return lambda env: compare(left(env), right(env))


def _neg(operand: Fn) -> Fn:
    def neg(env: Env) -> Any:
        value = operand(env)
        if not ops.is_number(value):
            raise EvalError(f"unary '-' needs a number, got a {type_name(value)}")
        return -value

    return neg


# --- methods and functions ---------------------------------------------------


def _method(node: Method, cc: CompileContext) -> Fn:
    target = compile_expr(node.target, cc)
    return compile_method(node, target, tuple(compile_expr(a, cc) for a in node.args), cc)


def _call(node: Call, cc: CompileContext) -> Fn:
    args = tuple(compile_expr(a, cc) for a in node.args)
    if "." in node.name:
        call = FactCall(name=node.name, args=args)
        cc.fact_calls.append(call)
        return compile_fact_call(call)
    if node.name == "now":
        cc.uses_now = True
    return compile_call(node.name, args)
