"""Methods (`s.contains(t)`, `user.has_permission(p)`, ...), global and fact functions (spec 4.5).

`has_any_grant` and `has_permission_fast` are fast copies of
`values.has_permission` for the usual shapes (a literal permission, a dict
subject); parity test:
packages/policy-core/tests/test_core_properties.py::test_literal_permission_grants_agree_with_has_permission.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from policy_core.compiler import values as ops
from policy_core.compiler.context import CompileContext, FactCall, Fn
from policy_core.compiler.facts import primitives
from policy_core.compiler.regex import search
from policy_core.compiler.runtime import Env, EvalError, type_name
from policy_core.ir import Lit, Method, Path
from policy_core.model import FactFailure
from policy_core.syntax.printer import to_expression

__all__ = [
    "GLOBAL_FUNCTIONS",
    "case",
    "compile_call",
    "compile_fact_call",
    "compile_method",
    "fetch_fact",
    "has_any_grant",
    "has_permission_fast",
    "has_role",
    "neg",
    "now",
    "permission_grants",
    "size",
    "string_method",
]


def string_method(name: str, receiver: Any, arg: Any) -> bool:
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


def case(name: str, value: Any) -> Any:
    if value is None:
        return None
    if type(value) is not str:
        raise EvalError(f"{name}() is not defined on a {type_name(value)}")
    return value.lower() if name == "lower" else value.upper()


def size(value: Any) -> int:
    if value is None:
        return 0
    if type(value) is str or isinstance(value, list | Mapping):
        return len(value)
    raise EvalError(f"size() is not defined on a {type_name(value)}")


def _subject(name: str, subject: Any) -> Mapping[str, Any] | None:
    if subject is None or type(subject) is dict or isinstance(subject, Mapping):
        return subject
    raise EvalError(f"{name}() needs an object such as user, got a {type_name(subject)}")


def has_role(subject: Any, role: Any) -> bool:
    if type(subject) is dict and type(role) is str:
        roles = subject.get("roles")
        if type(roles) is list:
            return role in roles  # a str only equals a str, so Python's == is the spec's here
    subject = _subject("has_role", subject)
    roles = subject.get("roles") if subject is not None else None
    return isinstance(roles, list) and ops.membership(role, roles)


def _has_permission(subject: Any, permission: Any) -> bool:
    return ops.has_permission(_subject("has_permission", subject), permission)


def compile_method(node: Method, target: Fn, args: tuple[Fn, ...], cc: CompileContext) -> Fn:
    """A method call, its receiver and arguments compiled already (by expr.py)."""
    name = node.name
    if name == "matches" and isinstance(node.args[0], Lit) and isinstance(node.target, Path):
        pattern = node.args[0].value
        if isinstance(pattern, str):
            return _regex_set_match(to_expression(node.target), pattern, target, cc)
    if not node.args:
        if name == "size":
            return lambda env: size(target(env))
        return lambda env: case(name, target(env))
    arg = args[0]
    if name == "contains":
        return lambda env: ops.contains(target(env), arg(env))
    if name == "has_role":
        return lambda env: has_role(target(env), arg(env))
    if name == "has_permission":
        if isinstance(node.args[0], Lit):
            return _has_literal_permission(target, node.args[0].value)
        return lambda env: _has_permission(target(env), arg(env))
    return lambda env: string_method(name, target(env), arg(env))


def permission_grants(permission: str) -> tuple[str, ...]:
    """Every grant that gives `permission`: itself, `*`, and `q.*` for each prefix `q.` of it.

    `q.*` covers the permissions that start with `q.` and have something after
    it (values.has_permission), so "a.b.c" is given by "a.b.c", "a.b.*", "a.*"
    and "*". Knowing them at compile time turns the check into list lookups.
    """
    grants = [permission]
    for i, char in enumerate(permission[:-1]):
        if char == ".":
            grants.append(permission[: i + 1] + "*")
    if permission != "*":
        grants.append("*")
    return tuple(grants)


def has_any_grant(subject: Any, grants: tuple[str, ...]) -> bool:
    """`subject.has_permission(grants[0])` for a literal permission (grants: permission_grants)."""
    if type(subject) is dict:
        granted = subject.get("permissions")
        if type(granted) is list:
            for grant in grants:  # noqa: SIM110 - any() with a generator costs more here
                if grant in granted:  # a str only equals a str: other items never match
                    return True
            return False
    return _has_permission(subject, grants[0])


def has_permission_fast(subject: Any, permission: Any) -> bool:
    """has_permission with a fast path for an exact grant; wildcards take the general check."""
    if type(subject) is dict and type(permission) is str:
        granted = subject.get("permissions")
        if type(granted) is list and permission in granted:
            return True
    return _has_permission(subject, permission)


def neg(value: Any) -> Any:
    if not ops.is_number(value):
        raise EvalError(f"unary '-' needs a number, got a {type_name(value)}")
    return -value


def _has_literal_permission(target: Fn, permission: Any) -> Fn:
    if type(permission) is str:
        grants = permission_grants(permission)
        return lambda env: has_any_grant(target(env), grants)
    return lambda env: has_permission_fast(target(env), permission)


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
    return primitives().estimate_tokens(value)  # type: ignore[no-any-return]


def _pii_types(value: Any) -> list[str]:
    if value is None:
        return []
    if type(value) is not str:
        raise EvalError(f"pii_types() needs a string, got a {type_name(value)}")
    return primitives().pii_types(value)  # type: ignore[no-any-return]


def now(env: Env) -> float:
    if env.now is None:
        raise EvalError("now() has no clock")  # the engine always sets it when a policy uses now()
    return env.now


GLOBAL_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "size": size,
    "has": lambda v: v is not None,
    "lower": lambda v: case("lower", v),
    "upper": lambda v: case("upper", v),
    "contains_pii": lambda v: bool(_pii_types(v)),
    "pii_types": _pii_types,
    "estimate_tokens": _estimate_tokens,
}


def compile_call(name: str, args: tuple[Fn, ...]) -> Fn:
    if name == "now":
        return now
    (arg,) = args
    fn = GLOBAL_FUNCTIONS[name]
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


def fetch_fact(env: Env, name: str, args: tuple[Any, ...]) -> Any:
    """A stateful or integration fact from the facts gathered before evaluation (spec 5.6)."""
    key = fact_key(name, args)
    facts = env.facts
    shown = ", ".join(repr(v) for v in key[1:])
    try:
        if facts is not None and key in facts:
            value = facts[key]
            if type(value) is FactFailure:
                raise EvalError(f"{name}({shown}): {value.integration} {value.reason}")
            return value
    except TypeError:  # an unhashable argument (a list or map) can never have been fetched
        pass
    raise EvalError(f"fact {name}({shown}) is unavailable")


def compile_fact_call(call: FactCall) -> Fn:
    name, args = call.name, call.args
    return lambda env: fetch_fact(env, name, tuple(a(env) for a in args))
