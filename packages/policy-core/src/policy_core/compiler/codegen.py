"""Code generation: one Python function per policy that evaluates all its rules.

FAST COPY of the closure compiler (expr.py and methods.py), the reference
form; the engine runs this one when no trace is asked for. Parity tests:
packages/policy-core/tests/test_core_properties.py::test_generated_code_agrees_with_the_closures
(random policies, every decision field), ::test_engine_agrees_with_the_reference_interpreter,
and test_core_engine.py::test_generated_code_and_closures_agree_under_trace,
::test_large_policies_are_generated_in_chunks_and_agree_with_closures.
A change to the semantics goes into both files.

Every path a policy reads is loaded once into a
local, comparisons against literals are inlined, and each rule sits in its
own try block, so one evaluation is a single function call per policy.

Safety: no text from a policy ever becomes code. Literals, path keys and
compiled rules are reached through the tuples `K` and `R`; the generated
source only contains names this module chose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policy_core.compiler import methods, values as ops
from policy_core.compiler.compiled import CompiledRule, RulesFunction
from policy_core.compiler.context import CompileContext, FactCall
from policy_core.compiler.expr import compile_expr, path_step
from policy_core.compiler.facts import (
    DERIVED_FACTS,
    RESPONSE_FACTS,
    compare_cost,
    derived_fact,
    response_fact,
)
from policy_core.compiler.index import indexed_rules_function
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
from policy_core.syntax.printer import to_expression

__all__ = ["generate_rule_units", "generate_rules_function"]

_NUM = frozenset({int, float})
_CMP_SYMBOL = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ARITH_HELPER = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}
_UNSET = object()  # a lazily computed local that has not been computed yet
_COST_PATH = Path(root="llm", segments=("estimated_cost",))
_STR_METHODS = {
    "contains": "{c} in {t}",
    "starts_with": "{t}.startswith({c})",
    "ends_with": "{t}.endswith({c})",
}


def _walk(value: Any, segs: tuple[str | int, ...]) -> Any:
    for seg in segs:
        value = path_step(value, seg)
    return value


class _Gen:
    def __init__(self, cc: CompileContext, shared: list[Any] | None = None) -> None:
        self.cc = cc
        # Own constants become closure cells c0, c1, ...; `shared` ones (several
        # functions of one batch, index.py) are read as K[i] from one tuple.
        self.shared = shared is not None
        self.consts: list[Any] = shared if shared is not None else []
        self.paths: dict[tuple[str, tuple[str | int, ...]], str] = {}
        self.path_lines: list[str] = []
        self.temps = 0
        self.lazy: dict[tuple[str, str], str] = {}

    def once(self, kind: str, key: str, compute: str) -> str:
        """A value computed at its first use in this function, then read from a local.

        The local starts as `_U` (unset), so a rule that never reaches the value
        never computes it, and an error leaves it unset for the next rule to raise.
        """
        name = self.lazy.get((kind, key))
        if name is None:
            name = self.lazy[(kind, key)] = f"l{len(self.lazy)}"
            self.path_lines.append(f"        {name} = _U")
        return f"({name} if {name} is not _U else ({name} := {compute}))"

    def const(self, value: Any) -> str:
        self.consts.append(value)
        if self.shared:
            return f"K[{len(self.consts) - 1}]"
        return f"c{len(self.consts) - 1}"

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def bind(self, code: str) -> tuple[str, str]:
        """(the name to test, the expression that binds it): locals need no walrus."""
        if code.isidentifier():
            return code, code
        t = self.temp()
        return t, f"({t} := {code})"

    def path(self, root: str, segs: tuple[str | int, ...]) -> str:
        key = (root, segs)
        name = self.paths.get(key)
        if name is not None:
            return name
        if not segs:
            code = f"ctx.get({self.const(root)})"
        else:
            parent = self.path(root, segs[:-1])
            last = self.const(segs[-1])
            if type(segs[-1]) is str:
                code = f"{parent}.get({last}) if type({parent}) is dict else _get({parent}, {last})"
            else:
                code = f"_get({parent}, {last})"
        name = f"p{len(self.paths)}"
        self.paths[key] = name
        self.path_lines.append(f"        {name} = {code}")
        return name

    # expressions: (code, always boolean?) -----------------------------------
    def cond(self, node: Expr) -> str:
        code, is_bool = self.expr(node)
        return code if is_bool else f"_as_bool({code})"

    def expr(self, node: Expr) -> tuple[str, bool]:
        if isinstance(node, Lit):
            value = node.value
            if value is None or type(value) is bool:
                return repr(value), type(value) is bool
            return self.const(value), False
        if isinstance(node, Path):
            if node.root == "llm" and node.segments and node.segments[0] in DERIVED_FACTS:
                name = str(node.segments[0])
                self.cc.derived.add(name)
                code = self.once("derived", name, f"_derived(env, {self.const(name)})")
                rest = node.segments[1:]
                return (f"_walk({code}, {self.const(rest)})" if rest else code), False
            if node.root == "response" and node.segments and node.segments[0] in RESPONSE_FACTS:
                name = str(node.segments[0])
                code = self.once("response", name, f"_response(env, {self.const(name)})")
                rest = node.segments[1:]
                return (f"_walk({code}, {self.const(rest)})" if rest else code), False
            return self.path(node.root, node.segments), False
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Not):
            return f"(not {self.cond(node.operand)})", True
        if isinstance(node, Neg):
            return f"_neg({self.expr(node.operand)[0]})", False
        if isinstance(node, Index):
            return f"_get({self.expr(node.target)[0]}, {self.expr(node.index)[0]})", False
        if isinstance(node, ListExpr):
            return "[" + "".join(self.expr(i)[0] + ", " for i in node.items) + "]", False
        if isinstance(node, MapExpr):
            pairs = (
                f"{self.const(k)}: {self.expr(v)[0]}"
                for k, v in zip(node.keys, node.values, strict=True)
            )
            return "{" + ", ".join(pairs) + "}", False
        if isinstance(node, Method):
            return self.method(node)
        assert isinstance(node, Call)
        return self.call(node)

    def binary(self, node: Binary) -> tuple[str, bool]:
        op = node.op
        if op in ("and", "or"):
            return "(" + f" {op} ".join(self.cond(o) for o in flatten(node, op)) + ")", True
        if op in ("==", "!="):
            code = self.equality(node)
            return (code if op == "==" else f"(not {code})"), True
        if op in ("in", "not in"):
            code = self.membership(node)
            return (code if op == "in" else f"(not {code})"), True
        if (
            op in _CMP_SYMBOL
            and node.left == _COST_PATH
            and isinstance(node.right, Lit)
            and ops.is_number(node.right.value)
        ):
            # Decided by an upper bound of the cost when it can be (facts.compare_cost).
            self.cc.derived.add("estimated_cost")
            return f"_cost_cmp(env, {self.const(op)}, {self.const(node.right.value)})", True
        left = self.expr(node.left)[0]
        if op in _CMP_SYMBOL:
            if isinstance(node.right, Lit) and ops.is_number(node.right.value):
                (t, bound), limit = self.bind(left), self.const(node.right.value)
                return (
                    f"(({t} {op} {limit}) if type({bound}) in _NUM else _cmp[{self.const(op)}]({t}, {limit}))",
                    True,
                )
            return f"_cmp[{self.const(op)}]({left}, {self.expr(node.right)[0]})", True
        return f"{_ARITH_HELPER[op]}({left}, {self.expr(node.right)[0]})", False

    def equality(self, node: Binary) -> str:
        lit, other = (
            (node.right, node.left) if isinstance(node.right, Lit) else (node.left, node.right)
        )
        if isinstance(lit, Lit) and not isinstance(other, Lit):
            value = lit.value
            code = self.expr(other)[0]
            if type(value) is str:
                return f"({code} == {self.const(value)})"
            if value is None or type(value) is bool:
                return f"({code} is {value!r})"
            t, bound = self.bind(code)
            return f"(type({bound}) in _NUM and {t} == {self.const(value)})"
        return f"_eq({self.expr(node.left)[0]}, {self.expr(node.right)[0]})"

    def membership(self, node: Binary) -> str:
        left = self.expr(node.left)[0]
        items = node.right.items if isinstance(node.right, ListExpr) else None
        if items and all(isinstance(i, Lit) for i in items):
            scalars = [i.value for i in items if isinstance(i, Lit)]
            t, bound = self.bind(left)
            if all(type(s) is str for s in scalars):
                return f"(type({bound}) is str and {t} in {self.const(frozenset(scalars))})"
            if all(ops.is_number(s) for s in scalars):
                return f"(type({bound}) in _NUM and {t} in {self.const(frozenset(scalars))})"
        return f"_in({left}, {self.expr(node.right)[0]})"

    def method(self, node: Method) -> tuple[str, bool]:
        name = node.name
        target = self.expr(node.target)[0]
        if name == "matches" and isinstance(node.target, Path) and isinstance(node.args[0], Lit):
            pattern = node.args[0].value
            if isinstance(pattern, str):
                key = to_expression(node.target)
                index = self.cc.regexes.register(key, pattern)
                if self.shared:  # the table is a constant: the function is shared across sets
                    table = self.const(self.cc.regexes)
                    compute = f"_rxt(env, {target}, {self.const(key)}, {table})"
                else:
                    compute = f"_rx(env, {target}, {self.const(key)})"
                hits = self.once("regex", key, compute)
                return f"({index} in {hits})", True
        if not node.args:
            if name == "size":
                return f"_size({target})", False
            return f"_case({self.const(name)}, {target})", False
        if name == "has_permission" and isinstance(node.args[0], Lit):
            permission = node.args[0].value
            if type(permission) is str:
                grants = self.const(methods.permission_grants(permission))
                return f"_has_grant({target}, {grants})", True
        if (
            name in _STR_METHODS
            and isinstance(node.args[0], Lit)
            and type(node.args[0].value) is str
        ):
            # A string receiver and a literal string: Python's own operation, inline;
            # anything else goes through the helper (null, errors).
            t, bound = self.bind(target)
            c = self.const(node.args[0].value)
            inline = _STR_METHODS[name].format(t=t, c=c)
            if name == "contains":
                fallback = f"_contains({t}, {c})"
            else:
                fallback = f"_strm({self.const(name)}, {t}, {c})"
            return f"(({inline}) if type({bound}) is str else {fallback})", True
        arg = self.expr(node.args[0])[0]
        helper = {
            "contains": "_contains",
            "has_role": "_has_role",
            "has_permission": "_has_permission",
        }.get(name)
        if helper is not None:
            return f"{helper}({target}, {arg})", True
        return f"_strm({self.const(name)}, {target}, {arg})", True

    def call(self, node: Call) -> tuple[str, bool]:
        args = [self.expr(a)[0] for a in node.args]
        if "." in node.name:
            call = FactCall(name=node.name, args=tuple(compile_expr(a, self.cc) for a in node.args))
            self.cc.fact_calls.append(call)
            return (
                f"_fact(env, {self.const(node.name)}, ({''.join(a + ', ' for a in args)}))",
                False,
            )
        if node.name == "now":
            self.cc.uses_now = True
            return "_now(env)", False
        if node.name == "has":
            return f"({args[0]} is not None)", True
        return f"_fn[{self.const(node.name)}]({args[0]})", node.name == "contains_pii"


_NO_HITS: frozenset[int] = frozenset()


def _rx_factory(cc: CompileContext) -> Callable[[Env, Any, str], frozenset[int]]:
    table = cc.regexes

    def rx(env: Env, text: Any, key: str) -> frozenset[int]:
        """The indexes of the patterns on path `key` that `text` matches (none for null)."""
        if type(text) is str:
            return table.matches(env, key, text)
        if text is None:
            return _NO_HITS
        raise EvalError(f"matches() is not defined on a {type_name(text)}")

    return rx


def _rx_table(env: Env, text: Any, key: str, table: Any) -> frozenset[int]:
    """_rx_factory's `rx` with the table passed in (the rule functions of index.py)."""
    if type(text) is str:
        return table.matches(env, key, text)  # type: ignore[no-any-return]
    if text is None:
        return _NO_HITS
    raise EvalError(f"matches() is not defined on a {type_name(text)}")


def _fail(out: Any, policy: Any, rule: CompiledRule, exc: BaseException) -> bool:
    """A rule raised: record it; fail closed makes it a deny match (spec 5.4)."""
    if isinstance(exc, RecursionError):
        return bool(
            out.fail(policy, rule, "a value in the context is nested too deeply to evaluate")
        )
    return bool(out.fail(policy, rule, str(exc)))


def _helpers(cc: CompileContext) -> dict[str, Any]:
    return {
        "_NUM": _NUM,
        "_U": _UNSET,
        "_EvalError": (EvalError, RecursionError),
        "_get": path_step,
        "_walk": _walk,
        "_as_bool": as_bool,
        "_eq": json_eq,
        "_in": ops.membership,
        "_cmp": ops.COMPARE,
        "_add": ops.ARITHMETIC["+"],
        "_sub": ops.ARITHMETIC["-"],
        "_mul": ops.ARITHMETIC["*"],
        "_div": ops.ARITHMETIC["/"],
        "_mod": ops.ARITHMETIC["%"],
        "_neg": methods.neg,
        "_size": methods.size,
        "_case": methods.case,
        "_contains": ops.contains,
        "_has_role": methods.has_role,
        "_has_permission": methods.has_permission_fast,
        "_has_grant": methods.has_any_grant,
        "_strm": methods.string_method,
        "_fn": methods.GLOBAL_FUNCTIONS,
        "_now": methods.now,
        "_fact": methods.fetch_fact,
        "_derived": derived_fact,
        "_response": response_fact,
        "_cost_cmp": compare_cost,
        "_rx": _rx_factory(cc),
        "_fail": _fail,
    }


# Python's compiler grows faster than linearly with the size of one function:
# large policies are split into chunks of this many rules.
CHUNK_RULES = 64


def generate_rules_function(
    rules: tuple[CompiledRule, ...], cc: CompileContext, *, indexed: bool = True
) -> RulesFunction | None:
    """The policy's rules as generated code, or None when the source cannot be
    compiled (absurdly deep expressions): the engine then uses the closures.

    A policy of at least index.INDEX_MIN_RULES rules runs behind the rule
    index (index.py) unless `indexed` is False (tests compare both).
    """
    if indexed:
        function = indexed_rules_function(rules, cc, generate_rule_units)
        if function is not None:
            return function
    chunks: list[RulesFunction] = []
    for start in range(0, len(rules), CHUNK_RULES):
        chunk = _generate_chunk(rules[start : start + CHUNK_RULES], cc)
        if chunk is None:
            return None
        chunks.append(chunk)
    if len(chunks) == 1:
        return chunks[0]
    parts = tuple(chunks)

    def run(env: Env, out: Any, policy: Any) -> bool:
        matched = False
        for part in parts:
            matched = part(env, out, policy) or matched
        return matched

    return run


def _chunk_body(gen: _Gen, rules: tuple[CompiledRule, ...]) -> list[str]:
    """The statements evaluating `rules` in order, inside a `run(env, out, policy)`."""
    body: list[str] = []
    for rule in rules:
        rule_ref = gen.const(rule)
        if rule.ir is None:
            body.append(f"        append({rule_ref})\n        matched = True")
            continue
        condition = gen.cond(rule.ir)
        body.append(
            f"        try:\n            if {condition}:\n                append({rule_ref})\n"
            f"                matched = True\n        except _EvalError as exc:\n"
            f"            matched = _fail(out, policy, {rule_ref}, exc) or matched"
        )
    return body


def _generate_chunk(rules: tuple[CompiledRule, ...], cc: CompileContext) -> RulesFunction | None:
    gen = _Gen(cc)
    try:
        body = _chunk_body(gen, rules)
        helpers = _helpers(cc)
        # Constants and helpers become closure cells of `run`: the fastest lookups Python has.
        source = "\n".join(
            [
                "def factory(K, H):",
                *(f"    c{i} = K[{i}]" for i in range(len(gen.consts))),
                *(f"    {name} = H[{name!r}]" for name in helpers),
                "    def run(env, out, policy):",
                "        ctx = env.ctx",
                "        append = out.matches.append",
                "        matched = False",
                *gen.path_lines,
                *body,
                "        return matched",
                "    return run",
            ]
        )
        namespace: dict[str, Any] = {}
        exec(compile(source, "<policy rules>", "exec"), namespace)  # noqa: S102 - see module docstring
        function: RulesFunction = namespace["factory"](tuple(gen.consts), helpers)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return None
    return function


_SHARED: dict[str, Any] = {}  # every helper but `_rx`, for the rule functions (see below)
_RULE_FUNCTIONS: dict[str, Callable[..., bool]] = {}
_MAX_RULE_FUNCTIONS = 4096


def generate_rule_units(
    rules: tuple[CompiledRule, ...], cc: CompileContext
) -> list[tuple[Callable[..., bool], tuple[Any, ...]]] | None:
    """Each rule as (function, constants): `function(env, out, policy, constants)` evaluates
    it as one statement of a chunk would (append, or record the error), and returns whether
    it matched (a fail-closed error counts), or None when the source cannot be compiled.

    The constants (literals, the rule, the regex table) are read from the tuple,
    so rules of the same shape (`project.id == "p-1" && llm.max_tokens > 4096`
    and `project.id == "p-2" && llm.max_tokens > 8192`) generate the same source
    and share one compiled function: compile() runs once per shape, not per rule
    (it costs about 0.1 ms per rule on this machine). The index runs these.
    """
    if not _SHARED:
        _SHARED.update(_helpers(CompileContext(cc.regexes)))
        del _SHARED["_rx"]
        _SHARED["_rxt"] = _rx_table
    units: list[tuple[Callable[..., bool], tuple[Any, ...]]] = []
    try:
        for rule in rules:
            gen = _Gen(cc, [])
            body = _chunk_body(gen, (rule,))
            source = "\n".join(
                [
                    "def u(env, out, policy, K):",
                    "    ctx = env.ctx",
                    "    append = out.matches.append",
                    "    matched = False",
                    *(line[4:] for line in gen.path_lines),
                    *(line[4:] for b in body for line in b.split("\n")),
                    "    return matched",
                ]
            )
            function = _RULE_FUNCTIONS.get(source)
            if function is None:
                namespace = dict(_SHARED)
                exec(compile(source, "<policy rule>", "exec"), namespace)  # noqa: S102 - see module docstring
                function = namespace["u"]
                if len(_RULE_FUNCTIONS) >= _MAX_RULE_FUNCTIONS:
                    _RULE_FUNCTIONS.clear()
                _RULE_FUNCTIONS[source] = function
            units.append((function, tuple(gen.consts)))
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return None
    return units
