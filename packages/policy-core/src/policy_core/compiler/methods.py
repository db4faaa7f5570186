"""Methods (`s.contains(t)`, `user.has_permission(p)`, ...), global and fact functions (spec 4.5)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from policy_core.compiler import values as ops
from policy_core.compiler.regex import search
from policy_core.compiler.runtime import Env, EvalError, type_name
from policy_core.ir import Lit, Method, Path
from policy_core.language.printer import to_expression

if TYPE_CHECKING:
    from policy_core.compiler.expr import CompileContext, FactCall

__all__ = ["compile_call", "compile_fact_call", "compile_method"]

Fn = Callable[[Env], Any]


def _string_method(name: str, receiver: Any, arg: Any) -> bool:
    if receiver is None:
        return False
    if type(receiver) is not str:
        raise EvalError(f"{name}() is not defined on a {type_name(receiver)}")
    if type(arg) is not str:
        raise EvalError(f"{name}() needs a string argument, got a {type_name(arg)}")
    if name == "starts_with":
        return receiver.startswith(arg)
    if name == "ends_with":
        return receiver.endswith(arg)
    return search(arg, receiver)


def _case(name: str, value: Any) -> Any:
    if value is None:
        return None
    if type(value) is not str:
        raise EvalError(f"{name}() is not defined on a {type_name(value)}")
    return value.lower() if name == "lower" else value.upper()


def _size(value: Any) -> int:
    if value is None:
        return 0
    if type(value) is str or isinstance(value, list | Mapping):
        return len(value)
    raise EvalError(f"size() is not defined on a {type_name(value)}")


def _subject(name: str, subject: Any) -> Mapping[str, Any] | None:
    if subject is None or isinstance(subject, Mapping):
        return subject
    raise EvalError(f"{name}() needs an object such as user, got a {type_name(subject)}")


def _has_role(subject: Any, role: Any) -> bool:
    subject = _subject("has_role", subject)
    roles = subject.get("roles") if subject is not None else None
    return isinstance(roles, list) and ops.membership(role, roles)


def _has_permission(subject: Any, permission: Any) -> bool:
    return ops.has_permission(_subject("has_permission", subject), permission)


def compile_method(node: Method, target: Fn, cc: CompileContext) -> Fn:
    from policy_core.compiler.expr import compile_expr

    name = node.name
    if name == "matches" and isinstance(node.args[0], Lit) and isinstance(node.target, Path):
        pattern = node.args[0].value
        if isinstance(pattern, str):
            return _regex_set_match(to_expression(node.target), pattern, target, cc)
    if not node.args:
        if name == "size":
            return lambda env: _size(target(env))
        return lambda env: _case(name, target(env))
    arg = compile_expr(node.args[0], cc)
    if name == "contains":
        return lambda env: ops.contains(target(env), arg(env))
    if name == "has_role":
        return lambda env: _has_role(target(env), arg(env))
    if name == "has_permission":
        if isinstance(node.args[0], Lit):
            return _has_literal_permission(target, node.args[0].value)
        return lambda env: _has_permission(target(env), arg(env))
    return lambda env: _string_method(name, target(env), arg(env))


def _has_literal_permission(target: Fn, permission: Any) -> Fn:
    def check(env: Env) -> bool:
        subject = target(env)
        if type(subject) is dict:
            granted = subject.get("permissions")
            # Fast path: an exact grant; wildcards fall through to the general check.
            if type(granted) is list and permission in granted and type(permission) is str:
                return True
        return _has_permission(subject, permission)

    return check


def _regex_set_match(path_key: str, pattern: str, target: Fn, cc: CompileContext) -> Fn:
    index = cc.regexes.register(path_key, pattern)
    table = cc.regexes

    def match(env: Env) -> bool:
        text = target(env)
        if type(text) is str:
            return index in table.matches(env, path_key, text)
        if text is None:
            return False
        raise EvalError(f"matches() is not defined on a {type_name(text)}")

    return match


def _estimate_tokens(value: Any) -> int:
    if value is None:
        return 0
    if type(value) is not str:
        raise EvalError(f"estimate_tokens() needs a string, got a {type_name(value)}")
    from policy_core.primitives.tokens import estimate_tokens

    return estimate_tokens(value)


def _pii_types(value: Any) -> list[str]:
    if value is None:
        return []
    if type(value) is not str:
        raise EvalError(f"pii_types() needs a string, got a {type_name(value)}")
    from policy_core.primitives.pii import pii_types

    return pii_types(value)


def _now(env: Env) -> float:
    if env.now is None:
        raise EvalError("now() has no clock")  # the engine always sets it when a policy uses now()
    return env.now


def compile_call(name: str, args: tuple[Fn, ...]) -> Fn:
    if name == "now":
        return _now
    (arg,) = args
    unary: dict[str, Callable[[Any], Any]] = {
        "size": _size,
        "has": lambda v: v is not None,
        "lower": lambda v: _case("lower", v),
        "upper": lambda v: _case("upper", v),
        "contains_pii": lambda v: bool(_pii_types(v)),
        "pii_types": _pii_types,
        "estimate_tokens": _estimate_tokens,
    }
    fn = unary[name]
    return lambda env: fn(arg(env))


def fact_key(name: str, values: tuple[Any, ...]) -> tuple[Any, ...]:
    """The facts-mapping key of a fact call, after checking its arguments."""
    if name in ("rate_limit.count", "budget.spent"):
        key, span = values
        allowed = ("1s", "1m", "1h", "1d") if name == "rate_limit.count" else ("day", "month")
        if type(key) is not str:
            raise EvalError(f"{name}() needs a string key, got a {type_name(key)}")
        if span not in allowed:
            raise EvalError(f"{name}() window must be one of {', '.join(allowed)}, got {span!r}")
    return (name, *values)


def compile_fact_call(call: FactCall) -> Fn:
    name, args = call.name, call.args

    def fact(env: Env) -> Any:
        key = fact_key(name, tuple(a(env) for a in args))
        facts = env.facts
        if facts is None or key not in facts:
            shown = ", ".join(repr(v) for v in key[1:])
            raise EvalError(f"fact {name}({shown}) is unavailable")
        return facts[key]

    return fact
