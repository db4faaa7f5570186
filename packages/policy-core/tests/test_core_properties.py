"""Hypothesis properties of the language and the engine.

- print then parse gives the same IR;
- the compiled engine agrees with a small, obviously-correct reference
  interpreter (below) on random policies and contexts;
- the loader raises nothing but PolicyLoadError on arbitrary input.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from policy_core import PolicyEngine, PolicyLoadError, load_policy_text
from policy_core.ir import Binary, Call, Expr, Index, ListExpr, Lit, MapExpr, Method, Neg, Not, Path
from policy_core.language import parse_expression, to_expression
from policy_core.model import (
    Action,
    AuditObligation,
    Policy,
    PolicyConfig,
    PolicyException,
    PolicyMetadata,
    PolicyStatus,
    Rule,
)
from policy_core.syntax.functions import FACT_NAMESPACES

# Hypothesis warns when it prints a large failing example; that is reporting, not a failure.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)

# --- strategies ------------------------------------------------------------

KEYWORDS = {"true", "false", "null", "and", "or", "not", "in"}
idents = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in KEYWORDS and s not in FACT_NAMESPACES
)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    floats,
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
)
SAFE_PATTERNS = ["a", "^x", "(?i)ab+c", r"\d+", "b$", "[xy]z"]


def _lit(value: Any) -> Lit:
    return Lit(value=value)


def _paths() -> st.SearchStrategy[Path]:
    segment = st.one_of(st.text(max_size=5), st.integers(-2, 3))
    return st.builds(
        lambda r, s: Path(root=r, segments=tuple(s)), idents, st.lists(segment, max_size=3)
    )


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    binary_ops = sorted(
        {"or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "+", "-", "*", "/", "%"}
    )
    return st.one_of(
        st.builds(
            lambda op, a, b: Binary(op=op, left=a, right=b),
            st.sampled_from(binary_ops),
            children,
            children,
        ),
        st.builds(lambda a: Not(operand=a), children),
        st.builds(lambda a: Neg(operand=a), children).filter(
            lambda n: (
                not (
                    isinstance(n.operand, Lit)
                    and isinstance(n.operand.value, int | float)
                    and not isinstance(n.operand.value, bool)
                )
            )
        ),
        st.builds(lambda items: ListExpr(items=tuple(items)), st.lists(children, max_size=3)),
        st.builds(
            lambda d: MapExpr(keys=tuple(d), values=tuple(d.values())),
            st.dictionaries(st.text(max_size=4), children, max_size=3),
        ),
        st.builds(
            lambda name, a: Call(name=name, args=(a,)),
            st.sampled_from(
                ["size", "lower", "upper", "contains_pii", "pii_types", "estimate_tokens"]
            ),
            children,
        ),
        st.just(Call(name="now")),
        st.builds(
            lambda name, t, a: Method(target=t, name=name, args=(a,)),
            st.sampled_from(["contains", "starts_with", "ends_with", "has_role", "has_permission"]),
            children,
            children,
        ).filter(
            lambda m: (
                not (
                    isinstance(m.target, Path)
                    and not m.target.segments
                    and m.target.root in FACT_NAMESPACES
                )
            )
        ),
        st.builds(
            lambda t, p: Method(target=t, name="matches", args=(_lit(p),)),
            children,
            st.sampled_from(SAFE_PATTERNS),
        ),
        st.builds(lambda t, i: Index(target=t, index=i), children, children).filter(
            lambda n: (
                not (
                    isinstance(n.target, Path)
                    and isinstance(n.index, Lit)
                    and (
                        isinstance(n.index.value, str)
                        or (isinstance(n.index.value, int) and not isinstance(n.index.value, bool))
                    )
                )
            )
        ),
        st.builds(lambda p: Call(name="has", args=(p,)), _paths()),
        st.builds(
            lambda k, w: Call(name="rate_limit.count", args=(k, w)),
            children,
            st.one_of(st.sampled_from(["1s", "1m", "1h", "1d"]).map(_lit), _paths()),
        ),
    )


expressions = st.recursive(st.one_of(scalars.map(_lit), _paths()), _extend, max_leaves=12)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(expressions)
def test_print_then_parse_gives_the_same_ir(expr: Expr) -> None:
    text = to_expression(expr)
    assert parse_expression(text) == expr, text


# --- the reference interpreter -----------------------------------------------


class RefError(Exception):
    pass


def is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def ref_eq(a: Any, b: Any) -> bool:
    if is_num(a) and is_num(b):
        return bool(a == b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(ref_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return set(a) == set(b) and all(ref_eq(a[k], b[k]) for k in a)
    return bool(a == b)


def ref_bool(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    raise RefError("not a boolean")


def ref_get(v: Any, k: Any) -> Any:
    if isinstance(k, str) and not isinstance(k, bool):
        return v.get(k) if isinstance(v, dict) else None
    if isinstance(k, int) and not isinstance(k, bool) and isinstance(v, list) and 0 <= k < len(v):
        return v[k]
    return None


def ref_in(x: Any, y: Any) -> bool:
    if y is None:
        return False
    if isinstance(y, list):
        return any(ref_eq(x, e) for e in y)
    if isinstance(y, dict):
        return isinstance(x, str) and x in y
    if isinstance(y, str):
        if not isinstance(x, str):
            raise RefError("in string")
        return x in y
    raise RefError("in")


def ref_eval(e: Expr, ctx: dict[str, Any], facts: dict[Any, Any]) -> Any:
    if isinstance(e, Lit):
        return e.value
    if isinstance(e, Path):
        v: Any = ctx.get(e.root)
        for s in e.segments:
            v = ref_get(v, s)
        return v
    if isinstance(e, Index):
        return ref_get(ref_eval(e.target, ctx, facts), ref_eval(e.index, ctx, facts))
    if isinstance(e, ListExpr):
        return [ref_eval(i, ctx, facts) for i in e.items]
    if isinstance(e, MapExpr):
        return {k: ref_eval(v, ctx, facts) for k, v in zip(e.keys, e.values, strict=True)}
    if isinstance(e, Not):
        return not ref_bool(ref_eval(e.operand, ctx, facts))
    if isinstance(e, Neg):
        v = ref_eval(e.operand, ctx, facts)
        if not is_num(v):
            raise RefError("neg")
        return -v
    if isinstance(e, Binary):
        if e.op == "and":
            return ref_bool(ref_eval(e.left, ctx, facts)) and ref_bool(
                ref_eval(e.right, ctx, facts)
            )
        if e.op == "or":
            return ref_bool(ref_eval(e.left, ctx, facts)) or ref_bool(ref_eval(e.right, ctx, facts))
        a, b = ref_eval(e.left, ctx, facts), ref_eval(e.right, ctx, facts)
        if e.op == "==":
            return ref_eq(a, b)
        if e.op == "!=":
            return not ref_eq(a, b)
        if e.op == "in":
            return ref_in(a, b)
        if e.op == "not in":
            return not ref_in(a, b)
        if e.op in ("<", "<=", ">", ">="):
            if a is None or b is None:
                return False
            if not ((is_num(a) and is_num(b)) or (isinstance(a, str) and isinstance(b, str))):
                raise RefError("compare")
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[e.op]
        if e.op == "+":
            if (is_num(a) and is_num(b)) or (type(a) is type(b) and isinstance(a, str | list)):
                return a + b
            raise RefError("+")
        if not (is_num(a) and is_num(b)):
            raise RefError("arith")
        if e.op in ("/", "%") and b == 0:
            raise RefError("zero")
        return {"-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b, "%": lambda: a % b}[
            e.op
        ]()
    if isinstance(e, Method):
        t = ref_eval(e.target, ctx, facts)
        args = [ref_eval(a, ctx, facts) for a in e.args]
        if e.name in ("has_role", "has_permission"):
            if t is not None and not isinstance(t, dict):
                raise RefError("subject")
            if e.name == "has_role":
                roles = (t or {}).get("roles")
                return isinstance(roles, list) and ref_in(args[0], roles)
            p = args[0]
            if not isinstance(p, str):
                raise RefError("perm")
            grants = (t or {}).get("permissions")
            if not isinstance(grants, list):
                return False
            return any(
                isinstance(g, str)
                and (
                    g in ("*", p)
                    or (g.endswith(".*") and p.startswith(g[:-1]) and len(p) > len(g) - 2)
                )
                for g in grants
            )
        if t is None:
            return {"size": 0, "lower": None, "upper": None}.get(e.name, False)
        if e.name == "size":
            if isinstance(t, str | list | dict) and not isinstance(t, bool):
                return len(t)
            raise RefError("size")
        if e.name == "contains" and isinstance(t, list | dict):
            return ref_in(args[0], t)
        if not isinstance(t, str):
            raise RefError("method on non-string")
        if e.name in ("lower", "upper"):
            return t.lower() if e.name == "lower" else t.upper()
        if not isinstance(args[0], str):
            raise RefError("arg")
        if e.name == "contains":
            return args[0] in t
        if e.name == "starts_with":
            return t.startswith(args[0])
        if e.name == "ends_with":
            return t.endswith(args[0])
        import re2

        return re2.search(args[0], t) is not None
    assert isinstance(e, Call)
    args = [ref_eval(a, ctx, facts) for a in e.args]
    if e.name == "now":
        return 1000.0
    if e.name == "has":
        return args[0] is not None
    if e.name == "size":
        return ref_eval(Method(target=Lit(value=args[0]), name="size"), ctx, facts)
    if e.name in ("lower", "upper"):
        return ref_eval(Method(target=Lit(value=args[0]), name=e.name), ctx, facts)
    if e.name == "rate_limit.count":
        if not isinstance(args[0], str) or args[1] not in ("1s", "1m", "1h", "1d"):
            raise RefError("fact args")
        key = ("rate_limit.count", *args)
        if key not in facts:
            raise RefError("missing fact")
        return facts[key]
    raise AssertionError(f"reference does not model {e.name}")


STRENGTH = {"allow": 0, "warn": 1, "modify": 2, "deny": 3}


def ref_decide(
    policies: list[Policy], ctx: dict[str, Any], facts: dict[Any, Any]
) -> dict[str, Any]:
    """Spec 5 for the generated policies (no drafts: drafts are checked separately below)."""
    order = sorted(
        (p for p in policies if p.status == PolicyStatus.ACTIVE),
        key=lambda p: (-p.metadata.priority, p.metadata.namespace, p.metadata.id),
    )
    matches: list[tuple[str, str, str | None, dict[str, Any], dict[str, Any]]] = []
    errors: list[dict[str, str]] = []
    excepted: list[str] = []
    for p in order:
        pid = p.metadata.id
        if p.scope_ir is not None:
            try:
                ok = ref_bool(ref_eval(p.scope_ir, ctx, facts))
            except RefError:
                errors.append({"policy": pid, "rule": "scope"})
                if not p.config.fail_open:
                    matches.append((f"{pid}/scope", "deny", "error", {}, {}))
                continue
            if not ok:
                continue
        hit_exception = False
        for ex in p.exceptions:
            try:
                if ex.condition_ir is None or ref_bool(ref_eval(ex.condition_ir, ctx, facts)):
                    excepted.append(f"{pid}/{ex.id}")
                    hit_exception = True
            except RefError:
                errors.append({"policy": pid, "rule": ex.id})
        if hit_exception:
            continue
        any_match = False
        for r in sorted((r for r in p.rules if r.enabled), key=lambda r: -r.priority):
            try:
                hit = r.condition_ir is None or ref_bool(ref_eval(r.condition_ir, ctx, facts))
            except RefError:
                errors.append({"policy": pid, "rule": r.id})
                if not p.config.fail_open:
                    matches.append((f"{pid}/{r.id}", "deny", "error", {}, {}))
                    any_match = True
                continue
            if hit:
                any_match = True
                matches.append(
                    (
                        f"{pid}/{r.id}",
                        r.action.decision,
                        r.action.reason,
                        r.action.metadata,
                        r.action.modifications,
                    )
                )
        if not any_match and p.config.default_decision != "none":
            matches.append((f"{pid}/default", p.config.default_decision, "default", {}, {}))
    outcome = "allow" if not matches else max((m[1] for m in matches), key=STRENGTH.__getitem__)
    metadata: dict[str, Any] = {}
    modifications: dict[str, Any] = {}
    for m in matches:
        if m[1] == outcome:
            for k, v in m[3].items():
                metadata.setdefault(k, v)
            if outcome == "modify":
                for k, v in m[4].items():
                    modifications.setdefault(k, v)
    return {
        "decision": outcome,
        "allowed": outcome != "deny",
        "matched_rules": [m[0] for m in matches],
        "matched_exceptions": excepted,
        "errors": errors,
        "metadata": metadata,
        "modifications": modifications,
    }


# --- random policies over a small context schema ----------------------------

FIELDS = [
    "user.id",
    "user.roles",
    "user.permissions",
    "llm.model",
    "llm.max_tokens",
    "team.tier",
    "n",
    "s",
]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([0.5, 2.0, -1.5]),
    st.sampled_from(["a", "b", "gpt-4", "x.y", ""]),
)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["a", "b"]), c, max_size=2),
    max_leaves=5,
)


def _field_expr(field: str) -> Path:
    parts = field.split(".")
    return Path(root=parts[0], segments=tuple(parts[1:]))


leaf_conditions = st.one_of(
    st.builds(
        lambda op, f, v: Binary(op=op, left=_field_expr(f), right=v),
        st.sampled_from(["==", "!=", "<", ">=", "in", "not in", "+"]),
        st.sampled_from(FIELDS),
        st.one_of(
            json_scalars.map(_lit),
            st.lists(json_scalars.map(_lit), max_size=3).map(lambda i: ListExpr(items=tuple(i))),
        ),
    ),
    st.builds(
        lambda name, f, v: Method(target=_field_expr(f), name=name, args=(_lit(v),)),
        st.sampled_from(["contains", "starts_with", "has_role", "has_permission", "size"]).map(
            lambda n: n
        ),
        st.sampled_from([*FIELDS, "user"]),
        json_scalars,
    ).map(
        lambda m: (
            m
            if m.name != "size"
            else Binary(op=">", left=Method(target=m.target, name="size"), right=_lit(1))
        )
    ),
    st.builds(
        lambda f: Method(target=_field_expr(f), name="matches", args=(_lit("^gpt"),)),
        st.sampled_from(FIELDS),
    ),
    st.builds(
        lambda f: Binary(
            op=">",
            left=Call(name="rate_limit.count", args=(_field_expr(f), _lit("1m"))),
            right=_lit(2),
        ),
        st.sampled_from(FIELDS),
    ),
    st.builds(
        lambda f: Binary(
            op="==", left=Binary(op="/", left=_lit(10), right=_field_expr(f)), right=_lit(5)
        ),
        st.sampled_from(FIELDS),
    ),
    st.sampled_from(FIELDS).map(_field_expr),
)
conditions = st.recursive(
    leaf_conditions,
    lambda c: (
        st.builds(
            lambda op, a, b: Binary(op=op, left=a, right=b), st.sampled_from(["and", "or"]), c, c
        )
        | st.builds(lambda a: Not(operand=a), c)
    ),
    max_leaves=4,
)


@st.composite
def policies_strategy(draw: st.DrawFn) -> list[Policy]:
    out = []
    for index in range(draw(st.integers(1, 3))):
        rules = []
        for r in range(draw(st.integers(0, 4))):
            decision = draw(st.sampled_from(["allow", "deny", "warn", "modify"]))
            rules.append(
                Rule(
                    id=f"r{r}",
                    name=f"r{r}",
                    priority=draw(st.integers(0, 2)),
                    enabled=draw(st.booleans()) or True,
                    condition_ir=draw(st.none() | conditions),
                    action=Action(
                        decision=decision,
                        reason=draw(st.sampled_from([None, f"reason {r}"])),
                        metadata=draw(
                            st.dictionaries(
                                st.sampled_from(["k", "j"]), st.integers(0, 3), max_size=2
                            )
                        ),
                        modifications={"llm.max_tokens": r} if decision == "modify" else {},
                    ),
                    obligations=(AuditObligation(),) if draw(st.booleans()) else (),
                )
            )
        exceptions = tuple(
            PolicyException(id=f"e{e}", name=f"e{e}", condition_ir=draw(conditions))
            for e in range(draw(st.integers(0, 1)))
        )
        out.append(
            Policy(
                metadata=PolicyMetadata(
                    id=f"p{index}",
                    name=f"p{index}",
                    priority=draw(st.integers(0, 1)),
                    namespace=draw(st.sampled_from(["a", "b"])),
                ),
                config=PolicyConfig(
                    default_decision=draw(st.sampled_from(["none", "allow", "deny"])),
                    fail_open=draw(st.booleans()),
                ),
                scope_ir=draw(st.none() | conditions),
                rules=tuple(rules),
                exceptions=exceptions,
                digest=f"d{index}",
            )
        )
    return out


contexts = st.fixed_dictionaries(
    {},
    optional={
        "user": st.fixed_dictionaries(
            {},
            optional={
                "id": json_values,
                "roles": json_values,
                "permissions": st.lists(st.sampled_from(["a", "x.*", "*", "x.y", 3]), max_size=3),
            },
        ),
        "llm": st.fixed_dictionaries(
            {}, optional={"model": json_values, "max_tokens": json_values}
        ),
        "team": st.fixed_dictionaries({}, optional={"tier": json_values}),
        "n": json_values,
        "s": json_values,
    },
)


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policies_strategy(), contexts, st.integers(0, 5))
def test_engine_agrees_with_the_reference_interpreter(
    policies: list[Policy], ctx: dict[str, Any], count: int
) -> None:
    facts: dict[Any, Any] = {
        ("rate_limit.count", "a", "1m"): count,
        ("rate_limit.count", "b", "1m"): count + 1,
    }
    snapshot = json.dumps(ctx, sort_keys=True)
    decision = msgspec.json.decode(
        msgspec.json.encode(PolicyEngine(policies).evaluate(ctx, facts=facts, now=1000.0))
    )
    expected = ref_decide(policies, ctx, facts)
    actual = {k: decision[k] for k in expected}
    actual["errors"] = [{"policy": e["policy"], "rule": e["rule"]} for e in decision["errors"]]
    assert actual == expected
    assert json.dumps(ctx, sort_keys=True) == snapshot  # never mutates the caller's context


def _untimed(decision: Any) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(decision)
    out.pop("evaluation_time_ms")
    out.pop("trace")
    if out["shadow"] is not None:
        out["shadow"].pop("evaluation_time_ms")
        out["shadow"].pop("trace")
    return out


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policies_strategy(), contexts, st.integers(0, 5))
def test_generated_code_agrees_with_the_closures(
    policies: list[Policy], ctx: dict[str, Any], count: int
) -> None:
    """The two backends of the compiler decide alike, every field (compiler/codegen.py).

    Without a trace the engine runs each policy's generated function; with
    one it runs the closures of compiler/expr.py (the reference form).
    """
    facts: dict[Any, Any] = {
        ("rate_limit.count", "a", "1m"): count,
        ("rate_limit.count", "b", "1m"): count + 1,
    }
    engine = PolicyEngine(policies)
    generated = engine.evaluate(ctx, facts=facts, now=1000.0)
    closures = engine.evaluate(ctx, facts=facts, now=1000.0, trace=True)
    assert _untimed(generated) == _untimed(closures)


@settings(max_examples=300, deadline=None)
@given(expressions, contexts)
def test_compiled_expressions_agree_with_the_reference(expr: Expr, ctx: dict[str, Any]) -> None:
    from policy_core.compiler.expr import CompileContext, compile_expr
    from policy_core.compiler.regex import RegexTable
    from policy_core.compiler.runtime import Env, EvalError

    if _uses_unmodelled(expr):
        return
    cc = CompileContext(RegexTable())
    fn = compile_expr(expr, cc)
    cc.regexes.build()
    try:
        expected: Any = ("ok", ref_eval(expr, ctx, {}))
    except (RefError, OverflowError):
        expected = ("error",)
    except ZeroDivisionError:
        expected = ("error",)
    try:
        actual: Any = ("ok", fn(Env(ctx, 1000.0, {})))
    except (EvalError, OverflowError):
        actual = ("error",)
    if expected[0] == "ok" and actual[0] == "ok":
        assert _same(actual[1], expected[1]), to_expression(expr)
    else:
        assert actual[0] == expected[0], to_expression(expr)


def _uses_unmodelled(e: Any) -> bool:
    if isinstance(e, Call) and e.name in ("contains_pii", "pii_types", "estimate_tokens"):
        return True
    return any(_uses_unmodelled(c) for c in _children(e))


def _children(e: Any) -> list[Any]:
    if isinstance(e, Binary):
        return [e.left, e.right]
    if isinstance(e, Not | Neg):
        return [e.operand]
    if isinstance(e, Index):
        return [e.target, e.index]
    if isinstance(e, Method):
        return [e.target, *e.args]
    if isinstance(e, Call | ListExpr):
        return list(e.args if isinstance(e, Call) else e.items)
    if isinstance(e, MapExpr):
        return list(e.values)
    return []


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return ref_eq(a, b)


# --- the loader never raises anything but PolicyLoadError -------------------

documents = st.recursive(
    st.one_of(
        scalars,
        st.sampled_from(["metadata", "rules", "id", "condition", "action", "deny", "a == 1", "(("]),
    ),
    lambda c: (
        st.lists(c, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "metadata",
                    "rules",
                    "id",
                    "condition",
                    "action",
                    "decision",
                    "config",
                    "operator",
                    "conditions",
                    "field",
                    "value",
                    "x",
                ]
            ),
            c,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=200),
        documents.map(lambda d: json.dumps(d)),
        documents.map(_yaml_dump := lambda d: __import__("json").dumps(d, indent=1)),
    )
)
def test_loader_raises_only_policy_load_error(text: str) -> None:
    issues: list[object] = []
    try:
        load_policy_text(text, file="fuzz.yaml")
    except PolicyLoadError as exc:
        issues = list(exc.issues)
        assert issues, "a load error lists at least one issue"


_permission_text = st.text(alphabet="ab.*", max_size=6)


@settings(max_examples=1000, deadline=None)
@given(_permission_text, st.lists(st.one_of(_permission_text, st.integers()), max_size=5))
def test_literal_permission_grants_agree_with_has_permission(
    permission: str, granted: list[Any]
) -> None:
    """The compile-time expansion of a literal permission decides as the general check."""
    from policy_core.compiler import values
    from policy_core.compiler.methods import has_any_grant, permission_grants

    subject = {"permissions": granted}
    grants = permission_grants(permission)
    assert grants[0] == permission
    assert has_any_grant(subject, grants) == values.has_permission(subject, permission)


_prompts = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=400),
    st.text(max_size=50),
    st.integers(),
)
_models = st.sampled_from(["gpt-4o", "o1-pro", "claude-3-haiku", "gpt-4o-mini", "no-such-model", 7])


@settings(max_examples=1500, deadline=None)
@given(
    prompt=_prompts,
    model=_models,
    provider=st.sampled_from([None, "openai", "anthropic", "azure", 3]),
    max_tokens=st.one_of(st.none(), st.integers(-10, 200_000), st.booleans(), st.floats(0, 1e5)),
    extra=st.sampled_from(
        [{}, {"messages": [{"content": "hi"}]}, {"estimated_tokens": 5}, {"estimated_cost": 0.5}]
    ),
    op=st.sampled_from(["<", "<=", ">", ">="]),
    limit=st.one_of(st.floats(0, 50, allow_nan=False), st.integers(0, 50)),
    first=st.booleans(),
)
def test_cost_comparisons_agree_with_the_exact_cost(
    prompt: Any,
    model: Any,
    provider: Any,
    max_tokens: Any,
    extra: dict[str, Any],
    op: str,
    limit: float,
    first: bool,
) -> None:
    """compare_cost (bound first, exact when needed) decides as the exact cost does,
    and leaves the same estimated_cost / estimated_tokens for later rules."""
    from policy_core.compiler.facts import compare_cost, derived_fact
    from policy_core.compiler.runtime import Env, EvalError
    from policy_core.compiler.values import COMPARE

    llm = {
        "prompt": prompt,
        "model": model,
        "provider": provider,
        "max_tokens": max_tokens,
        **extra,
    }
    ctx = {"llm": {k: v for k, v in llm.items() if v is not None}}
    reference = Env(ctx, 0.0, None)
    exact = derived_fact(reference, "estimated_cost")
    try:
        expected: Any = COMPARE[op](exact, limit)
    except EvalError:
        expected = "error"
    env = Env(ctx, 0.0, None)
    if first:  # another rule needed the exact cost already
        derived_fact(env, "estimated_cost")
    try:
        actual: Any = compare_cost(env, op, limit)
    except EvalError:
        actual = "error"
    assert actual == expected
    assert derived_fact(env, "estimated_cost") == exact
    assert derived_fact(env, "estimated_tokens") == derived_fact(reference, "estimated_tokens")


@settings(max_examples=300, deadline=None)
@given(
    prompt=st.text(alphabet=st.characters(max_codepoint=127), max_size=2000),
    model=st.sampled_from(["gpt-4o", "o1-pro", "claude-3-haiku", "gpt-4o-mini"]),
    max_tokens=st.integers(0, 100_000),
    op=st.sampled_from(["<", "<=", ">", ">="]),
    step=st.sampled_from([-1, 0, 1]),
)
def test_cost_comparisons_at_the_exact_cost_and_its_neighbours(
    prompt: str, model: Any, max_tokens: int, op: str, step: int
) -> None:
    from policy_core.compiler.facts import compare_cost, derived_fact
    from policy_core.compiler.runtime import Env
    from policy_core.compiler.values import COMPARE

    ctx = {"llm": {"prompt": prompt, "model": model, "max_tokens": max_tokens}}
    exact = derived_fact(Env(ctx, 0.0, None), "estimated_cost")
    assert isinstance(exact, float)
    limit = exact if step == 0 else math.nextafter(exact, math.inf * step)
    assert compare_cost(Env(ctx, 0.0, None), op, limit) == COMPARE[op](exact, limit)


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policies_strategy(), contexts, st.integers(0, 5))
def test_indexed_engine_agrees_with_the_reference_interpreter(
    policies: list[Policy], ctx: dict[str, Any], count: int
) -> None:
    """The rule index (compiler/index.py) on for every policy, however small: the same
    decisions as the reference interpreter (test_core_index.py: large generated sets)."""
    from policy_core.compiler import index as rule_index

    facts: dict[Any, Any] = {
        ("rate_limit.count", "a", "1m"): count,
        ("rate_limit.count", "b", "1m"): count + 1,
    }
    saved = rule_index.INDEX_MIN_RULES
    rule_index.INDEX_MIN_RULES = 1
    try:
        engine = PolicyEngine(policies)
    finally:
        rule_index.INDEX_MIN_RULES = saved
    decision = msgspec.json.decode(
        msgspec.json.encode(engine.evaluate(ctx, facts=facts, now=1000.0))
    )
    expected = ref_decide(policies, ctx, facts)
    actual = {k: decision[k] for k in expected}
    actual["errors"] = [{"policy": e["policy"], "rule": e["rule"]} for e in decision["errors"]]
    assert actual == expected
