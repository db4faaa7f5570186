"""Validation warnings (spec 6): rules that can never match, rules shadowed by an unconditional deny.

A condition that does not depend on the request is evaluated here with the
closure compiler (compiler/expr.py), so the warning agrees with what the
engine would do; this is why the language sits above the compiler.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator
from typing import Any

import msgspec

from policy_core.compiler.context import CompileContext
from policy_core.compiler.expr import compile_condition
from policy_core.compiler.regex import RegexTable
from policy_core.compiler.runtime import Env
from policy_core.errors import EvalError, Issue
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
from policy_core.language.phases import TextUses
from policy_core.language.source import SourceText, policy_id_position, rule_id_position
from policy_core.model import Policy, Rule
from policy_core.regex import pattern_reach
from policy_core.syntax.functions import INTEGRATION_OF

__all__ = ["integration_uses", "integration_warnings", "policy_warnings"]

_UNKNOWN = object()


def _is_constant(node: Expr) -> bool:
    if isinstance(node, Lit):
        return True
    if isinstance(node, Path | Call):
        return False  # context, clock and facts vary per request
    if isinstance(node, Not | Neg):
        return _is_constant(node.operand)
    if isinstance(node, Binary):
        if node.op in ("and", "or"):
            return all(_is_constant(o) for o in flatten(node, node.op))
        return _is_constant(node.left) and _is_constant(node.right)
    if isinstance(node, Method):
        return _is_constant(node.target) and all(_is_constant(a) for a in node.args)
    if isinstance(node, Index):
        return _is_constant(node.target) and _is_constant(node.index)
    if isinstance(node, ListExpr):
        return all(_is_constant(i) for i in node.items)
    assert isinstance(node, MapExpr)
    return all(_is_constant(v) for v in node.values)


def constant_value(node: Expr | None) -> Any:
    """The value of a condition that does not depend on the request, else _UNKNOWN."""
    if node is None:
        return True
    if not _is_constant(node):
        return _UNKNOWN
    cc = CompileContext(RegexTable())
    fn = compile_condition(node, cc)
    cc.regexes.build()
    try:
        return fn(Env({}, 0.0, None))
    except EvalError:
        return _UNKNOWN


def never_true(node: Expr | None) -> bool:
    """True when the condition can never be true: constantly false or null, an `&&` with
    such an operand (it is false or an error), or an `||` of such operands only."""
    if node is None:
        return False
    if isinstance(node, Binary) and node.op in ("and", "or"):
        operands = flatten(node, node.op)
        test = any if node.op == "and" else all
        return test(never_true(o) for o in operands)
    value = constant_value(node)
    return value is False or value is None


def policy_warnings(policy: Policy, src: SourceText, doc: Any) -> list[Issue]:
    warnings: list[Issue] = []
    ordered = sorted((r for r in policy.rules if r.enabled), key=lambda r: -r.priority)
    blocker: Rule | None = None
    for rule in ordered:
        line, col = rule_id_position(doc, rule.id)
        where = f"{policy.id}/{rule.id}"
        if blocker is not None:
            bline, _ = rule_id_position(doc, blocker.id)
            warnings.append(
                src.issue(
                    line,
                    col,
                    f"rule {where} is shadowed by the earlier unconditional deny rule "
                    f"{policy.id}/{blocker.id} (line {bline + 1}): the outcome is always deny",
                    warn=True,
                )
            )
        value = constant_value(rule.condition_ir)
        if never_true(rule.condition_ir):
            warnings.append(
                src.issue(
                    line,
                    col,
                    f"rule {where} can never match: its condition is always false",
                    warn=True,
                )
            )
        if blocker is None and value is True and rule.action.decision == "deny":
            blocker = rule
        if rule.phase == "response":
            warnings += _stream_warnings(policy, rule, src, line, col)
    return warnings


# --- integrations the configuration does not provide (spec 4.5) -------------------------

_TEMPLATE_FACT = re.compile(r"\b(shield\.scan|costops\.budget|governance\.approved_models)\s*\(")


def _fact_calls(node: Any) -> Iterator[str]:
    """Names of the integration fact calls in an IR tree (any node type, walked generically)."""
    if isinstance(node, Call):
        if node.name in INTEGRATION_OF:
            yield node.name
        for arg in node.args:
            yield from _fact_calls(arg)
        return
    if isinstance(node, msgspec.Struct):
        for field in node.__struct_fields__:
            yield from _fact_calls(getattr(node, field))
    elif isinstance(node, tuple | list):
        for item in node:
            yield from _fact_calls(item)


def integration_uses(policy: Policy) -> dict[str, str]:
    """Each integration the policy's facts need -> where it is first used (`rule r`, `scope`, ...)."""
    uses: dict[str, str] = {}

    def add(names: Iterable[str], where: str) -> None:
        for name in names:
            uses.setdefault(INTEGRATION_OF[name], f"{where} uses {name}()")

    add(_fact_calls(policy.scope_ir), "its scope")
    for exception in policy.exceptions:
        add(_fact_calls(exception.condition_ir), f"exception {exception.id}")
    for rule in policy.rules:
        add(_fact_calls(rule.condition_ir), f"rule {rule.id}")
        if rule.action.reason:
            add(_TEMPLATE_FACT.findall(rule.action.reason), f"rule {rule.id}'s reason")
    return uses


def integration_warnings(
    policy: Policy, configured: Collection[str], src: SourceText, doc: Any
) -> list[Issue]:
    """One warning per integration the policy uses that `configured` does not include."""
    out: list[Issue] = []
    for integration, where in sorted(integration_uses(policy).items()):
        if integration in configured:
            continue
        line, col = policy_id_position(doc)
        out.append(
            src.issue(
                line,
                col,
                f"{policy.metadata.id}: {where}, but the {integration} integration is not "
                f"configured (LLM_POLICY_{integration.upper()}_URL): the rule always fails",
                warn=True,
            )
        )
    return out


def _stream_warnings(
    policy: Policy, rule: Rule, src: SourceText, line: int, col: int
) -> list[Issue]:
    """Spec 7.2: what a stream judge cannot judge piece by piece."""
    where = f"{policy.id}/{rule.id}"
    uses = TextUses()
    uses.visit(rule.condition_ir)
    window = policy.config.stream_window or 1024
    out = [
        src.issue(
            line,
            col,
            f"rule {where}: the pattern {pattern!r} can match a span of any length; a stream "
            f"judge catches its matches only up to the stream window ({window} characters, "
            "config.stream_window)",
            warn=True,
        )
        for pattern in dict.fromkeys(uses.patterns)
        if pattern_reach(pattern) is None
    ]
    if uses.hold_all or "response.text" in rule.action.modifications:
        out.append(
            src.issue(
                line,
                col,
                f"rule {where} reads or sets response.text as a whole (not through a pattern "
                "or the PII detector): a stream judge holds the whole response back until "
                "it ends",
                warn=True,
            )
        )
    return out
