"""The compiled form of a policy set: plain slotted objects read on the hot path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policy_core.compiler.context import CompileContext, FactCall, Fn
from policy_core.compiler.expr import compile_condition
from policy_core.compiler.regex import RegexTable
from policy_core.compiler.runtime import Env
from policy_core.compiler.templates import Renderer
from policy_core.ir import Expr
from policy_core.model import Obligation, Policy

__all__ = ["CompiledException", "CompiledPolicy", "CompiledRule", "CompiledSet", "RulesFunction"]

# A policy's rules as one generated function (codegen.py):
# (env, outcome, policy) -> whether any rule matched; errors are reported through `fail`.
RulesFunction = Callable[[Env, Any, Any], bool]


class CompiledRule:
    __slots__ = (
        "_closure",
        "condition",
        "decision",
        "ir",
        "metadata",
        "modifications",
        "obligations",
        "policy_id",
        "qualified",
        "reason",
        "regexes",
        "rule_id",
        "sole_policies",
        "sole_rules",
        "strength",
    )

    def __init__(
        self,
        *,
        qualified: str,
        rule_id: str,
        decision: str,
        strength: int,
        condition: Fn | None,
        ir: Expr | None,
        reason: Renderer | str | None,
        modifications: dict[str, Any],
        metadata: dict[str, Any],
        obligations: tuple[Obligation, ...],
    ) -> None:
        self.qualified = qualified
        self.policy_id = qualified.rsplit("/", 1)[0]
        # matched_policies and matched_rules of a decision where this rule is the only match.
        self.sole_policies = (self.policy_id,)
        self.sole_rules = (qualified,)
        self.rule_id = rule_id
        self.decision = decision
        self.strength = strength
        self.condition = condition
        self.ir = ir
        self.regexes: RegexTable | None = None
        self._closure = condition
        self.reason = reason
        self.modifications = modifications
        self.metadata = metadata
        self.obligations = obligations

    def closure(self) -> Fn | None:
        """The condition as closures, compiled on first use (trace, or no generated code)."""
        if self._closure is None and self.ir is not None:
            # The generated code registered the same patterns in this table already.
            assert self.regexes is not None
            self._closure = compile_condition(self.ir, CompileContext(self.regexes))
        return self._closure


class CompiledException:
    __slots__ = ("condition", "exception_id", "ir", "qualified")

    def __init__(self, *, exception_id: str, qualified: str, condition: Fn | None, ir: Expr | None):
        self.exception_id = exception_id
        self.qualified = qualified
        self.condition = condition
        self.ir = ir


class CompiledPolicy:
    __slots__ = (
        "default_match",
        "derived",
        "exceptions",
        "fact_calls",
        "fail_open",
        "in_phase",
        "plain",
        "policy",
        "policy_id",
        "response",
        "rules",
        "run",
        "scope",
        "scope_ir",
        "uses_now",
    )

    def __init__(
        self,
        *,
        policy: Policy,
        scope: Fn | None,
        exceptions: tuple[CompiledException, ...],
        rules: tuple[CompiledRule, ...],
        default_match: CompiledRule | None,
        fact_calls: tuple[FactCall, ...] = (),
    ) -> None:
        self.policy = policy
        self.fact_calls = fact_calls
        self.policy_id = policy.metadata.id
        self.fail_open = policy.config.fail_open
        self.scope = scope
        self.scope_ir = policy.scope_ir
        self.exceptions = exceptions
        self.rules = rules
        self.default_match = default_match
        # Neither a scope nor exceptions: the engine calls `run` directly.
        self.plain = scope is None and not exceptions
        # The rules as one generated function (codegen.py); None: use the closures.
        self.run: RulesFunction | None = None
        # Spec 7.1: whether the policy takes part in this part's phase (it has rules of it).
        self.in_phase = True
        # The policy's response-phase part (its response rules and exceptions), if any.
        self.response: CompiledPolicy | None = None
        # Of the policy's own compile (passes.compile_policy): derived facts it reads, now().
        self.derived: frozenset[str] = frozenset()
        self.uses_now = False

    def rebound(self, policy: Policy) -> CompiledPolicy:
        """A copy reading `policy` (another object of the same revision), parts shared."""
        copy = object.__new__(CompiledPolicy)
        for name in CompiledPolicy.__slots__:
            object.__setattr__(copy, name, getattr(self, name))
        copy.policy = policy
        if self.response is not None:
            copy.response = self.response.rebound(policy)
        return copy


class CompiledSet:
    """Every loaded policy in evaluation order, and what the set needs at run time."""

    __slots__ = ("by_id", "by_key", "derived", "fact_calls", "policies", "uses_now")

    def __init__(
        self,
        *,
        policies: tuple[CompiledPolicy, ...],
        derived: frozenset[str],
        fact_calls: tuple[FactCall, ...],
        uses_now: bool,
        by_key: dict[tuple[str, str, str], CompiledPolicy] | None = None,
    ) -> None:
        self.policies = policies
        # (id, digest, status) -> compiled part, for compile_policies(reuse=...).
        self.by_key = by_key if by_key is not None else {}
        self.by_id = {p.policy_id: p for p in policies}
        self.derived = derived
        self.fact_calls = fact_calls
        self.uses_now = uses_now
