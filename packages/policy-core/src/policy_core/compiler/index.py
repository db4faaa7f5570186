"""The rule index: a large policy runs only the rules that can match or raise for a request.

FAST COPY of running every rule of the policy in order (codegen.py's chunks,
and the closures of engine._run_policy). Parity tests:
packages/policy-core/tests/test_core_index.py (hypothesis-generated sets of
up to 2,000 rules with overlapping keys, errors and exceptions: the indexed
engine, the unindexed one and the traced closures give the same decisions)
and test_core_properties.py::test_engine_agrees_with_the_reference_interpreter,
which runs with the index forced on as well.

Each rule gets at most one *key*, taken from one top-level conjunct of its
condition (`a && b && c`):

- `path == literal` (string, number, boolean or null) or `path in [literals]`
  (all strings or all numbers) on a static context path, not a derived fact:
  the rule is a candidate when the request's value at the path is one of the
  literals (a dict lookup; equal values hash alike, so 1 finds 1.0; a lookup
  may find more than the rule accepts, never less);
- `path.matches("literal")`: a candidate when the path's text matches the
  pattern (the policy's RE2 set answers for all patterns in one scan), or
  when the value is neither a string nor null (the rule then raises, so it
  must run to record the error).

A conjunct is only used when every conjunct before it cannot raise (they are
equality or membership tests of the first kind, `has(path)`, or their
negations): a rule skipped because its key conjunct is false would have
stopped there, without error, had it run. Among the usable conjuncts the one
on the path with the most distinct literals in the policy wins. Rules without
a key always run.

Candidates run as generated functions, one per key value (a "bucket", in rule
order). Rules are independent and the decision depends on their order only
through the order of `matches` and `errors`, so when two buckets both produced
entries they are put back into rule order by the position of their rule id
(unique within a policy; a policy with duplicate ids is not indexed). The
trace path (closures) never uses the index.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policy_core.compiler.compiled import CompiledRule, RulesFunction
from policy_core.compiler.context import CompileContext
from policy_core.compiler.expr import path_step
from policy_core.compiler.facts import DERIVED_FACTS, RESPONSE_FACTS
from policy_core.compiler.runtime import Env
from policy_core.ir import Binary, Call, Expr, ListExpr, Lit, Method, Not, Path, flatten
from policy_core.syntax.printer import to_expression

__all__ = [
    "INDEX_MIN_POLICIES",
    "INDEX_MIN_RULES",
    "PolicyIndex",
    "index_key",
    "indexed_rules_function",
    "keyed_paths",
]

# Policies with fewer enabled rules run them all (the index costs more than it saves there).
INDEX_MIN_RULES = 64
# A selection with fewer policies whose every rule is keyed runs each of them (PolicyIndex).
INDEX_MIN_POLICIES = 8

_SCALAR = (str, int, float, bool, type(None))


def _plain(node: Expr) -> bool:
    """A static context path the generated code loads without any call that can raise."""
    if not isinstance(node, Path):
        return False
    if node.root == "llm" and node.segments and node.segments[0] in DERIVED_FACTS:
        return False
    return not (node.root == "response" and node.segments and node.segments[0] in RESPONSE_FACTS)


def _literals(op: str, left: Expr, right: Expr) -> tuple[Path, tuple[Any, ...]] | None:
    """(path, literal values) of `path == lit`, `lit == path` or `path in [lits]` (codegen's
    inline forms, which never raise), else None."""
    if op == "==":
        if isinstance(left, Lit) and isinstance(right, Lit):
            return None
        for lit, other in ((right, left), (left, right)):
            if isinstance(lit, Lit) and _plain(other) and type(lit.value) in _SCALAR:
                assert isinstance(other, Path)
                return other, (lit.value,)
        return None
    if op == "in" and _plain(left) and isinstance(right, ListExpr):
        items = right.items
        if not items or not all(isinstance(i, Lit) for i in items):
            return None
        values = tuple(i.value for i in items if isinstance(i, Lit))
        if all(type(v) is str for v in values) or all(type(v) in (int, float) for v in values):
            assert isinstance(left, Path)
            return left, values
    return None


def _safe(node: Expr) -> bool:
    """Evaluating `node` as a condition cannot raise (see the module docstring)."""
    while isinstance(node, Not):
        node = node.operand
    if isinstance(node, Lit):
        return type(node.value) is bool or node.value is None
    if isinstance(node, Binary):
        op = {"!=": "==", "not in": "in"}.get(node.op, node.op)
        return _literals(op, node.left, node.right) is not None
    if isinstance(node, Call):
        return node.name == "has" and len(node.args) == 1 and _plain(node.args[0])
    return False


# A key: ("eq", root, segments, values) or ("rx", path key, root, segments, pattern).
Key = tuple[Any, ...]


def index_key(condition: Expr | None) -> list[Key]:
    """The usable keys of a rule's condition (see the module docstring), best not chosen yet."""
    if condition is None:
        return []
    keys: list[Key] = []
    for conjunct in flatten(condition, "and"):
        if isinstance(conjunct, Binary):
            found = _literals(conjunct.op, conjunct.left, conjunct.right)
            if found is not None:
                path, values = found
                keys.append(("eq", path.root, path.segments, values))
        elif (
            isinstance(conjunct, Method)
            and conjunct.name == "matches"
            and _plain(conjunct.target)
            and len(conjunct.args) == 1
            and isinstance(conjunct.args[0], Lit)
            and type(conjunct.args[0].value) is str
        ):
            target = conjunct.target
            assert isinstance(target, Path)
            keys.append(
                ("rx", to_expression(target), target.root, target.segments, conjunct.args[0].value)
            )
        if not _safe(conjunct):
            break  # a later conjunct is reached only after this one, which can raise
    return keys


def _walk(ctx: Any, root: str, segs: tuple[str | int, ...]) -> Any:
    """The context value at a path, as the generated code loads it (codegen._Gen.path)."""
    value = ctx.get(root)
    for seg in segs:
        value = (
            value.get(seg) if type(value) is dict and type(seg) is str else path_step(value, seg)
        )
    return value


Unit = tuple[Callable[..., bool], tuple[Any, ...]]  # codegen.generate_rule_units
Bucket = tuple[Unit, ...]


def indexed_rules_function(
    rules: tuple[CompiledRule, ...],
    cc: CompileContext,
    generate: Callable[[tuple[CompiledRule, ...], CompileContext], list[Unit] | None],
) -> RulesFunction | None:
    """The policy's rules behind the index, or None when it does not apply (too few rules,
    duplicate rule ids, or generated code that cannot be compiled).

    `generate` gives each rule as (function, constants) (codegen.generate_rule_units).
    """
    if len(rules) < INDEX_MIN_RULES or len({r.rule_id for r in rules}) != len(rules):
        return None
    candidates = [index_key(r.ir) for r in rules]
    # Distinct literals per path: the more, the fewer rules per bucket.
    spread: dict[Any, set[Any]] = {}
    for keys in candidates:
        for key in keys:
            if key[0] == "eq":
                spread.setdefault(("eq", key[1], key[2]), set()).update(key[3])
            else:
                spread.setdefault(("rx", key[1]), set()).add(key[4])

    def width(key: Key) -> int:
        return len(spread[("eq", key[1], key[2]) if key[0] == "eq" else ("rx", key[1])])

    units = generate(rules, cc)
    if units is None:
        return None
    eq_groups: dict[tuple[str, tuple[str | int, ...]], dict[Any, list[Unit]]] = {}
    rx_groups: dict[str, tuple[str, tuple[str | int, ...], dict[int, list[Unit]]]] = {}
    always: list[Unit] = []
    for unit, keys in zip(units, candidates, strict=True):
        if not keys:
            always.append(unit)
            continue
        best = max(keys, key=width)
        if best[0] == "eq":
            table = eq_groups.setdefault((best[1], best[2]), {})
            for value in dict.fromkeys(best[3]):
                table.setdefault(value, []).append(unit)
        else:
            _, path_key, root, segs, pattern = best
            entry = rx_groups.setdefault(path_key, (root, segs, {}))
            entry[2].setdefault(cc.regexes.register(path_key, pattern), []).append(unit)
    eq_paths = tuple(
        (root, segs, {value: tuple(b) for value, b in table.items()})
        for (root, segs), table in eq_groups.items()
    )
    rx_paths = tuple(
        (
            key,
            root,
            segs,
            {i: tuple(b) for i, b in by_pattern.items()},
            tuple(u for b in by_pattern.values() for u in b),
        )
        for key, (root, segs, by_pattern) in rx_groups.items()
    )
    position_of = {r.rule_id: i for i, r in enumerate(rules)}
    run = _runner(tuple(always), eq_paths, rx_paths, position_of, cc)
    if not always and not rx_paths:
        # Every rule is keyed on an equality: the policy runs no rule for a request whose
        # values fall in none of its buckets (PolicyIndex skips it then).
        run._keyed_paths = eq_paths  # type: ignore[attr-defined]
    return run


# (root, segments, {key value: bucket}) per path: the runner's own tables.
KeyedPaths = tuple[tuple[str, tuple[str | int, ...], dict[Any, Bucket]], ...]


def keyed_paths(run: RulesFunction | None) -> KeyedPaths | None:
    """The (path, key values) of an indexed policy whose every rule is keyed on an equality
    (it has no unkeyed and no regex-keyed rule), else None."""
    return getattr(run, "_keyed_paths", None)


def _runner(
    always: Bucket,
    eq_paths: tuple[tuple[str, tuple[str | int, ...], dict[Any, Bucket]], ...],
    rx_paths: tuple[tuple[str, str, tuple[str | int, ...], dict[int, Bucket], Bucket], ...],
    position_of: dict[str, int],
    cc: CompileContext,
) -> RulesFunction:
    table = cc.regexes
    by_rule = position_of.__getitem__

    def match_order(m: CompiledRule) -> int:
        return by_rule(m.rule_id)

    def error_order(e: Any) -> int:
        return by_rule(e.rule)

    def run(env: Env, out: Any, policy: Any) -> bool:
        matches = out.matches
        errors = out.errors
        m0 = len(matches)
        e0 = len(errors)
        matched = False
        for function, consts in always:
            if function(env, out, policy, consts):
                matched = True
        ctx = env.ctx
        for root, segs, buckets in eq_paths:
            value = _walk(ctx, root, segs)
            try:
                bucket = buckets.get(value)
            except TypeError:  # an unhashable value (list, map) equals no literal
                continue
            if bucket is not None:
                for function, consts in bucket:
                    if function(env, out, policy, consts):
                        matched = True
        for key, root, segs, by_pattern, every in rx_paths:
            text = _walk(ctx, root, segs)
            if type(text) is str:
                hits = table.matches(env, key, text)
                if not hits:
                    continue
                # In rule order: a text matching several patterns runs their rules once each.
                run_now: Bucket = tuple(
                    u for i in sorted(hits) if (b := by_pattern.get(i)) for u in b
                )
            elif text is not None:  # every rule on the path raises: let them record it
                run_now = every
            else:
                continue
            for function, consts in run_now:
                if function(env, out, policy, consts):
                    matched = True
        if len(matches) - m0 > 1:
            matches[m0:] = sorted(matches[m0:], key=match_order)
        if len(errors) - e0 > 1:
            errors[e0:] = sorted(errors[e0:], key=error_order)
        return matched

    return run


class PolicyIndex:
    """Across the policies of a selection: which of them can match a request at all.

    FAST COPY of running every policy of the selection in order (engine.Selection.evaluate).
    A policy whose rules are all keyed on equalities (`keyed_paths`), with no scope,
    exceptions or default decision, adds nothing to a decision, no match, error or
    trace, when the request's value at each of its key paths is none of its keys: its
    runner would look its buckets up, find none, and return. Such policies are looked
    up here, once per path for all of them (one dict lookup instead of one call per
    policy); the others always run. The policies to run come back in selection order,
    so matches and errors keep their order. Equal values hash alike (1, 1.0 and true
    share a key), so a lookup may find more policies than can match, never fewer.
    Parity: packages/policy-core/tests/test_core_index.py (sets of up to 100 policies,
    indexed engine against the one running every rule of every policy).
    """

    __slots__ = ("_active", "_fixed", "_fixed_at", "_paths")

    def __init__(self, active: tuple[Any, ...], keyed: list[int]) -> None:
        self._active = active
        skippable = set(keyed)
        self._fixed_at = tuple(i for i in range(len(active)) if i not in skippable)
        self._fixed = tuple(active[i] for i in self._fixed_at)
        tables: dict[tuple[str, tuple[str | int, ...]], dict[Any, set[int]]] = {}
        for i in keyed:
            for root, segs, buckets in keyed_paths(active[i].run) or ():
                table = tables.setdefault((root, segs), {})
                for value in buckets:
                    table.setdefault(value, set()).add(i)
        self._paths = tuple(
            (root, segs, {value: frozenset(at) for value, at in table.items()})
            for (root, segs), table in tables.items()
        )

    @classmethod
    def build(cls, active: tuple[Any, ...]) -> PolicyIndex | None:
        """The index of a selection's active policies, or None when too few can be skipped."""
        keyed = [
            i
            for i, p in enumerate(active)
            if p.plain
            and p.default_match is None
            and p.run is not None
            and keyed_paths(p.run) is not None
        ]
        return cls(active, keyed) if len(keyed) >= INDEX_MIN_POLICIES else None

    def policies_for(self, ctx: Any) -> tuple[Any, ...] | list[Any]:
        """The policies that can add to the decision of `ctx`, in selection order."""
        hit: set[int] | None = None
        for root, segs, table in self._paths:
            value = _walk(ctx, root, segs)
            try:
                found = table.get(value)
            except TypeError:  # an unhashable value (list, map) equals no literal
                continue
            if found is not None:
                if hit is None:
                    hit = set(found)
                else:
                    hit |= found
        if hit is None:
            return self._fixed
        hit.update(self._fixed_at)
        active = self._active
        return [active[i] for i in sorted(hit)]
