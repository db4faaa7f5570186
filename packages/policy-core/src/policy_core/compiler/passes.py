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

__all__ = ["PASSES", "compile_policies"]


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
    reason = (
        compile_template(parse_template(action.reason, check_regex=check_regex), cc)
        if action.reason is not None
        else None
    )
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


def compile_policies(policies: Iterable[Policy], *, index: bool = True) -> CompiledSet:
    """The compiled set of `policies`. `index=False` runs every rule of every policy
    (the rule index of compiler/index.py off: the tests compare both)."""
    build = _Build(policies, index)
    for compiler_pass in PASSES:
        compiler_pass(build)
    cc = build.cc
    return CompiledSet(
        policies=tuple(build.compiled),
        derived=frozenset(cc.derived),
        fact_calls=tuple(cc.fact_calls),
        uses_now=cc.uses_now,
    )
