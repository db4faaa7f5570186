"""The compiler: an ordered list of small named passes from loaded policies to a CompiledSet."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from policy_core.compiler.codegen import generate_rules_function
from policy_core.compiler.compiled import (
    CompiledException,
    CompiledPolicy,
    CompiledRule,
    CompiledSet,
)
from policy_core.compiler.context import CompileContext
from policy_core.compiler.expr import compile_condition
from policy_core.compiler.regex import RegexTable, check_regex
from policy_core.compiler.templates import compile_template
from policy_core.model import DECISION_STRENGTH, Policy, PolicyStatus, Rule
from policy_core.syntax.templates import parse_template

__all__ = ["PASSES", "compile_policies", "compile_policy", "policy_key"]


class _Build:
    """State threaded through the passes."""

    def __init__(self, policies: Iterable[Policy], index: bool = True) -> None:
        self.policies: list[Policy] = list(policies)
        self.index = index
        self.cc = CompileContext(RegexTable())
        self.compiled: list[CompiledPolicy] = []


def order_policies(build: _Build) -> None:
    """Spec 5.1: priority descending, then namespace, then id; deprecated ones never run."""
    build.policies = sorted(
        (p for p in build.policies if p.status is not PolicyStatus.DEPRECATED),
        key=lambda p: (-p.metadata.priority, p.metadata.namespace, p.metadata.id),
    )


def compile_conditions(build: _Build) -> None:
    """Scopes, exceptions and enabled rules (priority descending, then document order) to closures.

    Spec 7.1: each policy compiles once per phase it has rules of. The request
    part holds the request-phase rules and exceptions (a policy without any
    rule is a request-phase policy, as before v1.1; disabled rules count); `response` the
    response-phase ones, or None when the policy abstains in that phase.
    """
    cc = build.cc
    for policy in build.policies:
        rules = sorted(
            (r for r in policy.rules if r.enabled), key=lambda r: -r.priority
        )  # stable sort keeps document order within a priority
        request = _part(policy, [r for r in rules if r.phase == "request"], "request", cc)
        # A phase's rules count when written, enabled or not (a disabled rule's
        # policy still has its default decision in that phase, as before v1.1).
        phases = {r.phase for r in policy.rules}
        request.in_phase = "request" in phases or not phases
        if "response" in phases:
            responding = [r for r in rules if r.phase == "response"]
            request.response = _part(policy, responding, "response", cc)
        build.compiled.append(request)


def _part(policy: Policy, rules: list[Rule], phase: str, cc: CompileContext) -> CompiledPolicy:
    pid = policy.metadata.id
    default = policy.config.default_decision
    first_fact = len(cc.fact_calls)
    part = CompiledPolicy(
        policy=policy,
        scope=compile_condition(policy.scope_ir, cc) if policy.scope_ir else None,
        exceptions=tuple(
            CompiledException(
                exception_id=e.id,
                qualified=f"{pid}/{e.id}",
                condition=compile_condition(e.condition_ir, cc) if e.condition_ir else None,
                ir=e.condition_ir,
            )
            for e in policy.exceptions
            if e.enabled and e.phase == phase
        ),
        rules=tuple(_rule(pid, r, cc) for r in rules),
        default_match=None
        if default == "none"
        else _synthetic(pid, "default", default, f"default decision of policy {pid}"),
    )
    part.fact_calls = tuple(cc.fact_calls[first_fact:])
    return part


def generate_code(build: _Build) -> None:
    """Each policy's rules as one generated function for the hot path."""
    cc = build.cc
    parts = [p for c in build.compiled for p in (c, c.response) if p is not None]
    for policy in parts:
        first_fact = len(cc.fact_calls)
        policy.run = generate_rules_function(policy.rules, cc, indexed=build.index)
        for rule in policy.rules:
            rule.regexes = cc.regexes
            if policy.run is None and rule.ir is not None:
                rule.condition = rule._closure = compile_condition(rule.ir, cc)
        policy.fact_calls += tuple(cc.fact_calls[first_fact:])


def _rule(pid: str, rule: Rule, cc: CompileContext) -> CompiledRule:
    qualified = f"{pid}/{rule.id}"
    action = rule.action
    text = action.reason
    reason: Any
    if text is None or "{{" not in text:
        reason = text  # no hole: the text itself (what compile_template gives for it)
    elif "(" not in text:
        reason = _LazyReason(text)  # holes of paths only: no facts, no now(), no regexes
    else:
        reason = compile_template(parse_template(text, check_regex=check_regex), cc)
    return CompiledRule(
        qualified=qualified,
        rule_id=rule.id,
        decision=action.decision,
        strength=DECISION_STRENGTH[action.decision],
        condition=None,  # generated code, or closures in `generate_code` when that fails
        ir=rule.condition_ir,
        reason=reason,
        modifications=dict(action.modifications),
        metadata=dict(action.metadata),
        obligations=tuple(_with_rule(o, qualified) for o in rule.obligations),
    )


class _LazyReason:
    """A reason template compiled when a decision first renders it.

    Most rules of a large set never match, and a compiled template is several
    closures and cells; the compiled form is the same as compile_template's
    (the loader has checked the template). Only for templates without a call
    (a fact, now(), a method): compiling those registers facts with the set.
    """

    __slots__ = ("_render", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._render: Any = None

    def __call__(self, env: Any) -> str:
        render = self._render
        if render is None:
            cc = CompileContext(RegexTable())
            render = compile_template(parse_template(self.text, check_regex=check_regex), cc)
            if type(render) is str:
                text = render
                render = lambda _env: text  # noqa: E731
            self._render = render
        return render(env)  # type: ignore[no-any-return]


def _with_rule(obligation: Any, qualified: str) -> Any:
    return msgspec.structs.replace(obligation, rule=qualified)


def _synthetic(pid: str, rid: str, decision: str, reason: str) -> CompiledRule:
    return CompiledRule(
        qualified=f"{pid}/{rid}",
        rule_id=rid,
        decision=decision,
        strength=DECISION_STRENGTH[decision],
        condition=None,
        ir=None,
        reason=reason,
        modifications={},
        metadata={},
        obligations=(),
    )


def build_regex_sets(build: _Build) -> None:
    """One RE2 set per path that literal `matches()` patterns apply to."""
    build.cc.regexes.build()


PASSES: tuple[Callable[[_Build], None], ...] = (
    order_policies,
    compile_conditions,
    generate_code,
    build_regex_sets,
)

# What compiling one policy yields, keyed by what decides it (see compile_policies).
PolicyKey = tuple[str, str, str]


def policy_key(policy: Policy) -> PolicyKey | None:
    """(id, digest, status) of a policy, or None when it has no digest (built in code,
    not loaded: nothing then tells two revisions apart, so it is never reused)."""
    if not policy.digest:
        return None
    return (policy.metadata.id, policy.digest, policy.status.value)


def compile_policy(policy: Policy, *, index: bool = True) -> CompiledPolicy:
    """One policy on its own: its request part, with `.response` its response part.

    Self-contained: its own regex table (one RE2 set per path for this policy),
    its own derived facts and use of now() (`derived`, `uses_now`), its rule
    index (compiler/index.py). A deprecated policy compiles too (the set leaves
    it out).
    """
    build = _Build([policy], index)
    for compiler_pass in PASSES[1:]:  # one policy: nothing to order
        compiler_pass(build)
    part = build.compiled[0]
    part.derived = frozenset(build.cc.derived)
    part.uses_now = build.cc.uses_now
    return part


def compile_policies(
    policies: Iterable[Policy], *, index: bool = True, reuse: CompiledSet | None = None
) -> CompiledSet:
    """The compiled set of `policies`, in evaluation order (spec 5.1; deprecated ones left out).

    Each policy compiles on its own (`compile_policy`). With `reuse` (the set an
    engine serves now), a policy whose (id, digest, status) is in that set is not
    compiled again: its compiled part, index and regex sets are taken as they are
    (they are immutable once built), so recompiling after one policy changed costs
    that policy, plus a pass over the others. A reused part keeps the Policy
    object it was compiled from unless the caller passed a different object of the
    same revision, which it is then rebound to. Policies without a digest (built in
    code) are always compiled. `index=False` runs every rule of every policy (the
    tests compare both); a reused part keeps the index setting it was built with,
    so pass `reuse` only from a set compiled with the same `index`.
    """
    ordered = _Build(policies, index)
    order_policies(ordered)
    previous = reuse.by_key if reuse is not None else {}
    parts: list[CompiledPolicy] = []
    by_key: dict[PolicyKey, CompiledPolicy] = {}
    for policy in ordered.policies:
        key = policy_key(policy)
        part = previous.get(key) if key is not None else None
        if part is None:
            part = compile_policy(policy, index=index)
        elif part.policy is not policy:
            part = part.rebound(policy)
        if key is not None:
            by_key[key] = part
        parts.append(part)
    return CompiledSet(
        policies=tuple(parts),
        derived=frozenset().union(*(p.derived for p in parts)),
        fact_calls=tuple(
            c for p in parts for q in (p, p.response) if q is not None for c in q.fact_calls
        ),
        uses_now=any(p.uses_now for p in parts),
        by_key=by_key,
    )
