"""The decision engine (spec 5): a pure, synchronous function of (compiled policies, context).

Thread-safe: the compiled set is immutable once built; the only shared
mutable state is a cache of policy selections, filled with atomic dict writes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

from policy_core.compiler import CompiledPolicy, CompiledRule, CompiledSet, compile_policies
from policy_core.compiler.methods import fact_key
from policy_core.compiler.runtime import Env, EvalError
from policy_core.errors import PolicyNotFound
from policy_core.explain import first_failing
from policy_core.model import (
    DECISION_STRENGTH,
    Decision,
    EvaluationError,
    Policy,
    PolicyStatus,
    RuleTrace,
)

__all__ = ["FactRequest", "FactSource", "PolicyEngine"]

FactRequest = tuple[Any, ...]
_BY_STRENGTH = {v: k for k, v in DECISION_STRENGTH.items()}
_perf = time.perf_counter


class FactSource(Protocol):
    """Where `evaluate_async` gets stateful and integration facts (a UsageStore, usually)."""

    async def fetch(
        self, requests: Sequence[FactRequest], *, record: bool = True
    ) -> Mapping[FactRequest, Any]: ...


_ERRORS = (EvalError, RecursionError)


def _message(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "a value in the context is nested too deeply to evaluate"
    return str(exc)


class _Selection:
    """The policies one (policies, namespace) filter selects, and what follows from them."""

    __slots__ = ("active", "combined", "drafts", "fact_calls", "policy_set", "ttl")

    def __init__(self, combined: tuple[CompiledPolicy, ...], default_decision: str) -> None:
        self.combined = combined
        self.active = tuple(p for p in combined if p.policy.status is PolicyStatus.ACTIVE)
        self.drafts = tuple(p for p in combined if p.policy.status is PolicyStatus.DRAFT)
        self.fact_calls = tuple(c for p in combined for c in p.fact_calls)
        self.ttl = min((p.policy.config.cache_ttl_seconds for p in combined), default=0)
        ids = sorted(f"{p.policy_id}\0{p.policy.digest}\0{p.policy.status.value}" for p in combined)
        digest = hashlib.sha256("\n".join([default_decision, *ids]).encode()).hexdigest()
        self.policy_set = f"sha256:{digest}"


class _Outcome:
    """What evaluating policies produced: matches, exceptions, errors and trace, in order."""

    __slots__ = ("errors", "exceptions", "matches", "traces")

    def __init__(self, trace: bool) -> None:
        self.matches: list[CompiledRule] = []
        self.exceptions: list[str] = []
        self.errors: list[EvaluationError] = []
        self.traces: list[RuleTrace] | None = [] if trace else None

    def fail(self, policy: CompiledPolicy, rule: CompiledRule, message: str) -> bool:
        """A rule raised (spec 5.4): record it; fail closed counts it as a deny match."""
        self.errors.append(
            EvaluationError(policy=policy.policy_id, rule=rule.rule_id, message=message)
        )
        if self.traces is not None:
            self.traces.append(
                _trace(policy.policy_id, rule.rule_id, "rule", "error", error=message)
            )
        if policy.fail_open:
            return False
        self.matches.append(_error_match(policy, rule.rule_id, message))
        return True

    def extend(self, other: _Outcome) -> None:
        self.matches += other.matches
        self.exceptions += other.exceptions
        self.errors += other.errors
        if self.traces is not None and other.traces is not None:
            self.traces += other.traces


class PolicyEngine:
    """Compiles policies once; `evaluate` then answers in microseconds.

    `default_decision` is what a request gets when no rule of any policy matches.
    """

    def __init__(
        self,
        policies: Iterable[Policy] = (),
        *,
        default_decision: Literal["allow", "deny"] = "allow",
    ) -> None:
        self._policies = tuple(policies)
        seen: set[str] = set()
        for policy in self._policies:
            if policy.id in seen:
                raise ValueError(f"policy id {policy.id!r} is loaded twice; ids must be unique")
            seen.add(policy.id)
        if default_decision not in ("allow", "deny"):
            raise ValueError(
                f"default_decision must be 'allow' or 'deny', not {default_decision!r}"
            )
        self._default = default_decision
        self._loaded = frozenset(seen)
        self._compiled: CompiledSet = compile_policies(self._policies)
        self._selections: dict[tuple[tuple[str, ...] | None, str | None], _Selection] = {}
        self._everything: _Selection | None = None  # the unfiltered selection, most requests'
        self._everything = self._select(None, None)

    @property
    def policies(self) -> tuple[Policy, ...]:
        return self._policies

    @property
    def default_decision(self) -> str:
        return self._default

    # --- selection ------------------------------------------------------

    def _select(self, policies: Sequence[str] | None, namespace: str | None) -> _Selection:
        # An empty list or namespace means "not given": gRPC (proto3) cannot tell them
        # apart from absent, and every interface must decide a request the same way.
        key = (tuple(policies) if policies else None, namespace or None)
        selection = self._selections.get(key)
        if selection is not None:
            return selection
        policies, namespace = key
        wanted: set[str] | None = None
        if policies is not None:
            wanted = set(policies)
            for policy_id in policies:
                if policy_id not in self._loaded:
                    raise PolicyNotFound(policy_id)
        combined = tuple(
            p
            for p in self._compiled.policies
            if (wanted is None or p.policy_id in wanted)
            and (namespace is None or p.policy.metadata.namespace == namespace)
        )
        selection = _Selection(combined, self._default)
        if len(self._selections) > 1024:
            self._selections.clear()  # callers with unbounded filter combinations
        self._selections[key] = selection
        return selection

    def policy_set(
        self, policies: Sequence[str] | None = None, namespace: str | None = None
    ) -> str:
        """`sha256:...` identifying the exact selected revisions (and the engine default)."""
        return self._select(policies, namespace).policy_set

    def cache_ttl(self, policies: Sequence[str] | None = None, namespace: str | None = None) -> int:
        """The smallest `cache_ttl_seconds` of the selected policies (0 = never cache)."""
        return self._select(policies, namespace).ttl

    def uses_stateful_facts(
        self, policies: Sequence[str] | None = None, namespace: str | None = None
    ) -> bool:
        return bool(self._select(policies, namespace).fact_calls)

    def fact_requests(
        self,
        context: Mapping[str, Any],
        *,
        policies: Sequence[str] | None = None,
        namespace: str | None = None,
        now: float | None = None,
    ) -> list[FactRequest]:
        """The stateful/integration facts the selected policies need for this context, de-duplicated."""
        selection = self._select(policies, namespace)
        env = Env(context, time.time() if now is None else now, None)
        seen: dict[FactRequest, None] = {}
        for call in selection.fact_calls:
            try:
                seen[fact_key(call.name, tuple(arg(env) for arg in call.args))] = None
            except (EvalError, TypeError):
                continue  # the rule reports the error itself when it is evaluated
        return list(seen)

    # --- evaluation -----------------------------------------------------

    async def evaluate_async(
        self,
        context: Mapping[str, Any],
        *,
        usage: FactSource,
        record: bool = True,
        policies: Sequence[str] | None = None,
        namespace: str | None = None,
        trace: bool = False,
        now: float | None = None,
    ) -> Decision:
        """Fetch the facts the policies need in one call, then evaluate."""
        now = time.time() if now is None else now
        requests = self.fact_requests(context, policies=policies, namespace=namespace, now=now)
        facts = await usage.fetch(requests, record=record) if requests else {}
        return self.evaluate(
            context, policies=policies, namespace=namespace, trace=trace, now=now, facts=facts
        )

    def evaluate(
        self,
        context: Mapping[str, Any],
        *,
        policies: Sequence[str] | None = None,
        namespace: str | None = None,
        trace: bool = False,
        now: float | None = None,
        facts: Mapping[FactRequest, Any] | None = None,
    ) -> Decision:
        """Decide one request. Never mutates `context`; raises only PolicyNotFound (bad filter)."""
        start = _perf()
        if policies is None and namespace is None:
            selection = self._everything or self._select(None, None)
        else:
            selection = self._select(policies, namespace)
        if now is None and self._compiled.uses_now:
            now = time.time()
        env = Env(context, now, facts)
        if not selection.drafts:
            outcome = _Outcome(trace)
            for policy in selection.active:
                run = policy.run
                if run is not None and policy.plain and not trace:
                    # _run_policy's path for a policy without scope or exceptions, inline.
                    if not run(env, outcome, policy) and policy.default_match is not None:
                        outcome.matches.append(policy.default_match)
                else:
                    _run_policy(policy, env, outcome)
            return _decide(outcome, env, self._default, selection, None, start)
        return self._evaluate_with_shadow(selection, env, trace, start)

    def _evaluate_with_shadow(
        self, selection: _Selection, env: Env, trace: bool, start: float
    ) -> Decision:
        # Each policy runs once; the enforced decision combines the active ones,
        # the shadow decision combines all of them as if the drafts were active.
        per_policy: list[tuple[CompiledPolicy, _Outcome]] = []
        for policy in selection.combined:
            outcome = _Outcome(trace)
            _run_policy(policy, env, outcome)
            per_policy.append((policy, outcome))
        enforced, shadow = _Outcome(trace), _Outcome(False)
        for policy, outcome in per_policy:
            shadow.extend(outcome)
            if policy.policy.status is PolicyStatus.ACTIVE:
                enforced.extend(outcome)
            elif enforced.traces is not None and outcome.traces is not None:
                enforced.traces += outcome.traces
        shadow_decision = _decide(shadow, env, self._default, selection, None, start)
        return _decide(enforced, env, self._default, selection, shadow_decision, start)


# --- one policy ------------------------------------------------------------


def _error_match(policy: CompiledPolicy, rule_id: str, message: str) -> CompiledRule:
    qualified = f"{policy.policy_id}/{rule_id}"
    return CompiledRule(
        qualified=qualified,
        rule_id=rule_id,
        decision="deny",
        strength=DECISION_STRENGTH["deny"],
        condition=None,
        ir=None,
        reason=f"evaluation error in {qualified}: {message}",
        modifications={},
        metadata={},
        obligations=(),
    )


def _run_policy(policy: CompiledPolicy, env: Env, out: _Outcome) -> None:
    pid = policy.policy_id
    traces = out.traces
    if policy.scope is not None:
        try:
            in_scope = policy.scope(env)
        except _ERRORS as exc:
            message = _message(exc)
            out.errors.append(EvaluationError(policy=pid, rule="scope", message=message))
            if traces is not None:
                traces.append(_trace(pid, "scope", "scope", "error", error=message))
            if not policy.fail_open:
                out.matches.append(_error_match(policy, "scope", message))
            return
        if not in_scope:
            if traces is not None:
                traces.append(_trace(pid, "scope", "scope", "not_matched", policy.scope_ir, env))
            return
    if policy.exceptions and _excepted(policy, env, out):
        return
    if traces is None and policy.run is not None:
        matched = policy.run(env, out, policy)
        if not matched and policy.default_match is not None:
            out.matches.append(policy.default_match)
        return
    matched = False
    matches = out.matches
    for rule in policy.rules:
        condition = rule.closure()
        if condition is None:
            hit = True
        else:
            try:
                hit = condition(env)
            except _ERRORS as exc:
                matched = out.fail(policy, rule, _message(exc)) or matched
                continue
        if hit:
            matches.append(rule)
            matched = True
            if traces is not None:
                traces.append(_trace(pid, rule.rule_id, "rule", "matched"))
        elif traces is not None:
            traces.append(_trace(pid, rule.rule_id, "rule", "not_matched", rule.ir, env))
    if not matched and policy.default_match is not None:
        matches.append(policy.default_match)
        if traces is not None:
            traces.append(_trace(pid, "default", "default", "matched"))


def _excepted(policy: CompiledPolicy, env: Env, out: _Outcome) -> bool:
    """Evaluate every exception (all matches are listed); errors count as no match."""
    pid = policy.policy_id
    traces = out.traces
    excepted = False
    for exception in policy.exceptions:
        try:
            hit = exception.condition(env) if exception.condition is not None else True
        except _ERRORS as exc:
            message = _message(exc)
            out.errors.append(
                EvaluationError(policy=pid, rule=exception.exception_id, message=message)
            )
            if traces is not None:
                traces.append(
                    _trace(pid, exception.exception_id, "exception", "error", error=message)
                )
            continue
        if hit:
            out.exceptions.append(exception.qualified)
            excepted = True
        if traces is not None:
            result: Literal["matched", "not_matched"] = "matched" if hit else "not_matched"
            traces.append(
                _trace(
                    pid,
                    exception.exception_id,
                    "exception",
                    result,
                    exception.ir if not hit else None,
                    env,
                )
            )
    return excepted


def _trace(
    policy: str,
    rule: str,
    kind: Literal["scope", "exception", "rule", "default"],
    result: Literal["matched", "not_matched", "error", "skipped"],
    ir: Any = None,
    env: Env | None = None,
    error: str | None = None,
) -> RuleTrace:
    failed = None
    if ir is not None and env is not None:
        failed = first_failing(ir, env)
    return RuleTrace(policy=policy, rule=rule, kind=kind, result=result, failed=failed, error=error)


# --- combining (spec 5.2) ------------------------------------------------------


def _json_copy(value: Any) -> Any:
    """A copy of a JSON value, so that callers cannot change a compiled rule through a decision."""
    if type(value) is dict:
        return {k: _json_copy(v) for k, v in value.items()}
    if type(value) is list:
        return [_json_copy(v) for v in value]
    return value


def _render(rule: CompiledRule, env: Env) -> str | None:
    reason = rule.reason
    if reason is None or type(reason) is str:
        return reason
    return reason(env)  # type: ignore[operator]


def _decide(
    out: _Outcome,
    env: Env,
    default: str,
    selection: _Selection,
    shadow: Decision | None,
    start: float,
) -> Decision:
    matches = out.matches
    if not matches:
        return Decision(
            decision=default,  # type: ignore[arg-type]
            allowed=default != "deny",
            matched_exceptions=tuple(out.exceptions) if out.exceptions else (),
            errors=tuple(out.errors) if out.errors else (),
            shadow=shadow,
            policy_set=selection.policy_set,
            evaluation_time_ms=(_perf() - start) * 1000.0,
            trace=tuple(out.traces) if out.traces is not None else None,
        )
    if len(matches) == 1:
        return _decide_one(matches[0], out, env, selection, shadow, start)
    strength = 0
    for m in matches:
        if m.strength > strength:
            strength = m.strength
    outcome = _BY_STRENGTH[strength]
    winners = [m for m in matches if m.strength == strength]
    first = winners[0]
    reason = _render(first, env)
    metadata: dict[str, Any] = {}
    modifications: dict[str, Any] = {}
    for m in winners:
        if m.metadata:
            for key, value in m.metadata.items():
                metadata.setdefault(key, value)
        if m.modifications and outcome == "modify":
            for path, value in m.modifications.items():
                modifications.setdefault(path, value)
    warnings: list[str] = []
    obligations: list[Any] = []
    for m in matches:
        if m.obligations:
            obligations += m.obligations
        if m.strength == 1:  # warn
            warnings.append(_render(m, env) or m.qualified)
    return Decision(
        decision=outcome,  # type: ignore[arg-type]
        allowed=outcome != "deny",
        reason=reason if reason is not None else first.qualified,
        matched_policies=tuple(dict.fromkeys([m.policy_id for m in matches])),
        matched_rules=tuple(m.qualified for m in matches),
        matched_exceptions=tuple(out.exceptions),
        warnings=tuple(warnings),
        modifications=_json_copy(modifications) if modifications else modifications,
        obligations=tuple(obligations),
        metadata=_json_copy(metadata) if metadata else metadata,
        errors=tuple(out.errors),
        shadow=shadow,
        policy_set=selection.policy_set,
        evaluation_time_ms=(_perf() - start) * 1000.0,
        trace=tuple(out.traces) if out.traces is not None else None,
    )


def _decide_one(
    m: CompiledRule,
    out: _Outcome,
    env: Env,
    selection: _Selection,
    shadow: Decision | None,
    start: float,
) -> Decision:
    """`_decide` for the commonest case, a single match: the same decision, fewer steps."""
    outcome = m.decision
    reason = m.reason
    if reason is not None and type(reason) is not str:
        reason = reason(env)  # type: ignore[operator]
    return Decision(
        decision=outcome,  # type: ignore[arg-type]
        allowed=outcome != "deny",
        reason=reason if reason is not None else m.qualified,
        matched_policies=m.sole_policies,
        matched_rules=m.sole_rules,
        matched_exceptions=tuple(out.exceptions) if out.exceptions else (),
        warnings=(reason or m.qualified,) if m.strength == 1 else (),
        modifications=_json_copy(m.modifications)
        if m.modifications and outcome == "modify"
        else {},
        obligations=m.obligations,
        metadata=_json_copy(m.metadata) if m.metadata else {},
        errors=tuple(out.errors) if out.errors else (),
        shadow=shadow,
        policy_set=selection.policy_set,
        evaluation_time_ms=(_perf() - start) * 1000.0,
        trace=tuple(out.traces) if out.traces is not None else None,
    )
