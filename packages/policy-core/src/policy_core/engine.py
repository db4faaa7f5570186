"""The decision engine (spec 5): a pure, synchronous function of (compiled policies, context).

`PolicyEngine.select(policies, namespace)` resolves a request's policy filter
once into a `Selection`: the selected policies and everything that follows
from them (policy set id, cache TTL, the facts they need, audit modes). A
caller that asks several questions about one request (the EvaluationService)
holds the Selection; `PolicyEngine.evaluate` is `select(...).evaluate(...)`.

Thread-safe: the compiled set and every Selection are immutable once built;
the only shared mutable state is the cache of selections, filled with atomic
dict writes.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol

import msgspec

from policy_core.compiler import CompiledPolicy, CompiledRule, CompiledSet, compile_policies
from policy_core.compiler.facts import derived_fact
from policy_core.compiler.index import PolicyIndex
from policy_core.compiler.methods import fact_key
from policy_core.compiler.runtime import Env, EvalError
from policy_core.errors import PolicyNotFound
from policy_core.explain import first_failing
from policy_core.model import (
    DECISION_STRENGTH,
    Decision,
    EvaluationError,
    FactFailure,
    FactRequest,
    Policy,
    PolicyStatus,
    RedactObligation,
    Reservation,
    RuleTrace,
)

if TYPE_CHECKING:
    from policy_core.streams import ResponseStream

__all__ = [
    "DEFAULT_DENY_REASON",
    "DEFAULT_RESERVATION_TTL",
    "RESPONSE_TEXT",
    "USAGE_FACTS",
    "FactSource",
    "IntegrationSource",
    "PolicyEngine",
    "Selection",
    "evaluate_with_facts",
    "freeze_after_load",
    "response_cost",
]

#: The fact kinds a usage store answers; every other kind is an integration's.
USAGE_FACTS = frozenset({"rate_limit.count", "budget.spent"})
#: The reason of a deny that no rule decided: the engine-wide default applied.
DEFAULT_DENY_REASON = "no rule matched; the engine's default decision is deny"
#: Seconds an unsettled reservation holds its amount (spec 7.3: 10 minutes).
DEFAULT_RESERVATION_TTL = 600.0
#: The modification path of the text a response decision passes on (spec 7.1).
RESPONSE_TEXT = "response.text"

_BY_STRENGTH = {v: k for k, v in DECISION_STRENGTH.items()}
_perf = time.perf_counter
_log = logging.getLogger(__name__)
_set = object.__setattr__


def freeze_after_load(*, collect: bool = True) -> None:
    """Move every object alive now to the collector's permanent generation (`gc.freeze()`).

    For the application that embeds the engine, once its policies are loaded and
    its engine built (and again after it swaps in a new engine): a compiled set of
    10,000 rules is some 170,000 container objects that never change, and without
    this every full collection walks them all (about 100-250 ms on a 2-core machine,
    a stall on whatever thread triggers it). Frozen objects are never collected:
    those of an engine replaced later stay in memory until `gc.unfreeze()`, so an
    application that swaps engines often should now and then call `gc.unfreeze()`
    then `freeze_after_load()` again (one full collection's cost, off the request
    path). `collect` first collects what is garbage already, so that it is not
    frozen with the rest. The engine never calls this itself: the process's heap
    is the application's to manage (docs/benchmarks.md, "Scale").
    """
    if collect:
        gc.collect()
    gc.freeze()


class FactSource(Protocol):
    """Where stateful and integration facts come from (a UsageStore, usually)."""

    async def fetch(
        self, requests: Sequence[FactRequest], *, record: bool = True
    ) -> Mapping[FactRequest, Any]: ...


class IntegrationSource(Protocol):
    """Where integration facts come from (policy_core.integrations.IntegrationFacts).

    Answers every request it is given: a value, or a FactFailure naming the
    integration and the reason; `context` is the evaluation's (whose model and
    user/team/project ids the calls carry).
    """

    async def fetch(
        self,
        requests: Sequence[FactRequest],
        *,
        context: Mapping[str, Any],
        record: bool = True,
    ) -> Mapping[FactRequest, Any]: ...


async def _fetch_usage(
    usage: FactSource,
    requests: list[FactRequest],
    record: bool,
    into: dict[FactRequest, Any],
    reserve: Reservation | None = None,
) -> None:
    try:
        if reserve is None:
            into.update(await usage.fetch(requests, record=record))
        else:  # a UsageStore: reserve atomically with the reads (spec 7.3)
            into.update(await usage.fetch(requests, record=record, reserve=reserve))  # type: ignore[call-arg]
    except Exception:
        # Missing facts become evaluation errors: the policy's fail mode decides.
        _log.warning("usage facts unavailable; the rules using them fail", exc_info=True)


async def _fetch_integrations(
    source: IntegrationSource,
    requests: list[FactRequest],
    context: Mapping[str, Any],
    record: bool,
    into: dict[FactRequest, Any],
) -> None:
    try:
        into.update(await source.fetch(requests, context=context, record=record))
    except Exception as exc:
        _log.warning("integration facts unavailable; the rules using them fail", exc_info=True)
        for r in requests:
            into[r] = FactFailure(r[0].split(".", 1)[0], f"failed: {type(exc).__name__}: {exc}")


_ERRORS = (EvalError, RecursionError)


def _message(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "a value in the context is nested too deeply to evaluate"
    return str(exc)


def _filter(
    policies: Sequence[str] | None, namespace: str | None
) -> tuple[tuple[str, ...] | None, str | None]:
    """The one normal form of a policy filter.

    An empty list or namespace means "not given": gRPC (proto3) cannot tell
    them apart from absent, and every interface must decide a request the same way.
    """
    return (tuple(policies) if policies else None, namespace or None)


class Selection:
    """The policies one (policies, namespace) filter selects, and what follows from them.

    Immutable. `PolicyEngine.select` builds one per filter and caches it, so
    holding one for a request costs nothing and every question about the
    request (`policy_set`, `cache_ttl`, `uses_facts`, `fact_requests`,
    `gather_facts`, `evaluate`) is answered from the same resolution.

    - `policies`, `namespace`: the filter in normal form (None = not given).
    - `selected`: the selected policies in evaluation order, drafts included.
    - `policy_set`: `sha256:...` of the selected revisions and the engine default.
    - `cache_ttl`: the smallest `cache_ttl_seconds` of the selected policies
      (0 = never cache).
    - `uses_facts`, `fact_kinds`: whether, and which, stateful or integration
      facts (`rate_limit.count`, `budget.spent`, `shield.scan`, ...) the
      selected policies use; a decision using them is never cached.
    - `audit_modes`: `config.audit` per selected policy id; `audits_unmatched`:
      whether a decision no policy matched is audited (unless every selected
      policy opted out with `audit: none`).
    """

    __slots__ = (
        "_active",
        "_combined",
        "_default",
        "_default_reason",
        "_drafts",
        "_fact_calls",
        "_index",
        "_r_active",
        "_r_combined",
        "_r_drafts",
        "_r_fact_calls",
        "_r_view",
        "_stream_plan",
        "_uses_now",
        "audit_modes",
        "audits_unmatched",
        "cache_ttl",
        "fact_kinds",
        "namespace",
        "policies",
        "policy_set",
        "selected",
        "uses_facts",
    )

    _active: tuple[CompiledPolicy, ...]
    _index: PolicyIndex | None
    _combined: tuple[CompiledPolicy, ...]
    _default: str
    _default_reason: str | None
    _drafts: tuple[CompiledPolicy, ...]
    _fact_calls: tuple[Any, ...]
    _r_active: tuple[CompiledPolicy, ...]
    _r_combined: tuple[CompiledPolicy, ...]
    _r_drafts: tuple[CompiledPolicy, ...]
    _r_fact_calls: tuple[Any, ...]
    _r_view: _ResponseView
    _stream_plan: Any
    _uses_now: bool
    audit_modes: Mapping[str, str]
    audits_unmatched: bool
    cache_ttl: int
    fact_kinds: frozenset[str]
    namespace: str | None
    policies: tuple[str, ...] | None
    policy_set: str
    selected: tuple[Policy, ...]
    uses_facts: bool

    def __init__(
        self,
        combined: tuple[CompiledPolicy, ...],
        *,
        policies: tuple[str, ...] | None,
        namespace: str | None,
        default_decision: str,
        uses_now: bool,
    ) -> None:
        # Spec 7.1: each phase runs only the policies with rules of it (precomputed here,
        # so the request path reads the same attributes as before the response phase).
        requesting = tuple(p for p in combined if p.in_phase)
        responding = tuple(p.response for p in combined if p.response is not None)
        fact_calls = tuple(c for p in requesting for c in p.fact_calls)
        ids = sorted(f"{p.policy_id}\0{p.policy.digest}\0{p.policy.status.value}" for p in combined)
        digest = hashlib.sha256("\n".join([default_decision, *ids]).encode()).hexdigest()
        modes = {p.policy_id: p.policy.config.audit for p in combined}
        active = tuple(p for p in requesting if p.policy.status is PolicyStatus.ACTIVE)
        for name, value in (
            ("_combined", requesting),
            ("_active", active),
            # Which active policies can match a request at all (None: too few to skip).
            ("_index", PolicyIndex.build(active)),
            ("_drafts", tuple(p for p in requesting if p.policy.status is PolicyStatus.DRAFT)),
            ("_fact_calls", fact_calls),
            ("_r_combined", responding),
            ("_r_active", tuple(p for p in responding if p.policy.status is PolicyStatus.ACTIVE)),
            ("_r_drafts", tuple(p for p in responding if p.policy.status is PolicyStatus.DRAFT)),
            ("_r_fact_calls", tuple(c for p in responding for c in p.fact_calls)),
            ("_stream_plan", None),
            ("_default", default_decision),
            ("_default_reason", DEFAULT_DENY_REASON if default_decision == "deny" else None),
            ("_uses_now", uses_now),
            ("policies", policies),
            ("namespace", namespace),
            ("selected", tuple(p.policy for p in combined)),
            ("policy_set", f"sha256:{digest}"),
            ("cache_ttl", min((p.policy.config.cache_ttl_seconds for p in combined), default=0)),
            ("uses_facts", bool(fact_calls)),
            ("fact_kinds", frozenset(c.name for c in fact_calls)),
            ("audit_modes", MappingProxyType(modes)),
            ("audits_unmatched", not modes or any(m != "none" for m in modes.values())),
        ):
            _set(self, name, value)
        _set(self, "_r_view", _ResponseView(self.policy_set))

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"a Selection is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"a Selection is immutable; cannot delete {name!r}")

    def __repr__(self) -> str:
        return (
            f"Selection(policies={self.policies!r}, namespace={self.namespace!r}, "
            f"policy_set={self.policy_set!r})"
        )

    # --- facts --------------------------------------------------------------

    def fact_requests(
        self,
        context: Mapping[str, Any],
        *,
        now: float | None = None,
        response: Mapping[str, Any] | None = None,
    ) -> list[FactRequest]:
        """The stateful/integration facts the selected policies need for this context, de-duplicated.

        With `response`, those of the response phase (spec 7.1), for that response.
        """
        calls = self._fact_calls if response is None else self._r_fact_calls
        if not calls:
            return []
        ctx = context if response is None else _with_response(context, response)
        env = Env(ctx, time.time() if now is None else now, None)
        seen: dict[FactRequest, None] = {}
        for call in calls:
            try:
                seen[fact_key(call.name, tuple(arg(env) for arg in call.args))] = None
            except (EvalError, TypeError):
                continue  # the rule reports the error itself when it is evaluated
        return list(seen)

    async def gather_facts(
        self,
        context: Mapping[str, Any],
        *,
        usage: FactSource | None,
        integrations: IntegrationSource | None = None,
        record: bool = True,
        now: float | None = None,
        reserve: Reservation | None = None,
        wanted: Sequence[FactRequest] | None = None,
        response: Mapping[str, Any] | None = None,
    ) -> dict[FactRequest, Any]:
        """Fetch the facts this context needs: counters from `usage`, the rest from `integrations`.

        Each source is asked once, for all its facts, both at the same time; each
        distinct fact once. A usage store that is absent or fails (logged)
        leaves its facts missing; an integration fact that cannot be had is a
        FactFailure naming the integration and the reason (not configured, timed
        out, ...): the rules using them then fail as their policy's `fail_open`
        says (spec 4.5, 5.4). `record=False` (a dry run) asks the usage store not
        to count this request; `reserve` (see `reservation`) asks it to hold the
        estimated cost, atomically with the reads. `wanted` is
        `fact_requests(context, now=now)` when the caller has it already.
        """
        if wanted is None:
            wanted = self.fact_requests(context, now=now, response=response)
        facts: dict[FactRequest, Any] = {}
        if not wanted:
            return facts
        counters = [r for r in wanted if r[0] in USAGE_FACTS]
        others = [r for r in wanted if r[0] not in USAGE_FACTS]
        if not others:
            if usage is not None:
                await _fetch_usage(usage, counters, record, facts, reserve)
            return facts
        if integrations is None:
            facts.update(
                {r: FactFailure(r[0].split(".", 1)[0], "is not configured") for r in others}
            )
            if usage is not None and counters:
                await _fetch_usage(usage, counters, record, facts, reserve)
            return facts
        # Counters and integrations at the same time: the slowest bounds the wait.
        if usage is None or not counters:
            await _fetch_integrations(integrations, others, context, record, facts)
        else:
            await asyncio.gather(
                _fetch_usage(usage, counters, record, facts, reserve),
                _fetch_integrations(integrations, others, context, record, facts),
            )
        return facts

    def reservation(
        self,
        context: Mapping[str, Any],
        wanted: Sequence[FactRequest],
        *,
        now: float,
        ttl: float = DEFAULT_RESERVATION_TTL,
    ) -> Reservation | None:
        """The reservation an allowed request would hold (spec 7.3), or None.

        One when `wanted` (the request's facts) has `budget.spent` facts: the
        request's `llm.estimated_cost` (0 when it cannot be estimated, e.g. an
        unknown model) on each distinct key, expiring `ttl` seconds from `now`.
        """
        keys = tuple(dict.fromkeys(str(r[1]) for r in wanted if r[0] == "budget.spent"))
        if not keys:
            return None
        try:
            cost = derived_fact(Env(context, now, None), "estimated_cost")
        except Exception:  # a context the estimate cannot read reserves 0
            cost = None
        amount = 0.0
        if type(cost) in (int, float) and math.isfinite(cost) and cost > 0:
            amount = float(cost)
        return Reservation(
            id=os.urandom(16).hex(),
            amount=amount,
            keys=keys,
            expires_at=datetime.fromtimestamp(now, UTC) + timedelta(seconds=ttl),
        )

    # --- evaluation -----------------------------------------------------------

    def evaluate(
        self,
        context: Mapping[str, Any],
        trace: bool = False,
        now: float | None = None,
        facts: Mapping[FactRequest, Any] | None = None,
    ) -> Decision:
        """Decide one request against the selected policies. Never mutates `context`.

        `now` (epoch seconds) is the time `now()` sees; `facts` the gathered
        stateful/integration facts (`gather_facts`). Positional parameters are
        allowed so that `PolicyEngine.evaluate` delegates with the cheapest call.
        """
        start = _perf()
        if now is None and self._uses_now:
            now = time.time()
        env = Env(context, now, facts)
        if not self._drafts:
            outcome = _Outcome(trace)
            index = self._index
            policies = self._active if index is None or trace else index.policies_for(context)
            for policy in policies:
                run = policy.run
                if run is not None and policy.plain and not trace:
                    # _run_policy's path for a policy without scope or exceptions, inline.
                    if not run(env, outcome, policy) and policy.default_match is not None:
                        outcome.matches.append(policy.default_match)
                else:
                    _run_policy(policy, env, outcome)
            return _decide(outcome, env, self, None, start)
        return self._evaluate_with_shadow(env, trace, start, self._combined, self)

    def _evaluate_with_shadow(
        self,
        env: Env,
        trace: bool,
        start: float,
        combined: tuple[CompiledPolicy, ...],
        view: Selection | _ResponseView,
    ) -> Decision:
        # Each policy runs once; the enforced decision combines the active ones,
        # the shadow decision combines all of them as if the drafts were active.
        per_policy: list[tuple[CompiledPolicy, _Outcome]] = []
        for policy in combined:
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
        shadow_decision = _decide(shadow, env, view, None, start)
        return _decide(enforced, env, view, shadow_decision, start)

    # --- the response phase (spec 7.1, 7.2) -----------------------------------------

    @property
    def responds(self) -> bool:
        """Whether any selected policy has response-phase rules (else every response is allowed)."""
        return bool(self._r_combined)

    @property
    def response_uses_facts(self) -> bool:
        return bool(self._r_fact_calls)

    def evaluate_response(
        self,
        context: Mapping[str, Any],
        response: Mapping[str, Any],
        *,
        trace: bool = False,
        now: float | None = None,
        facts: Mapping[FactRequest, Any] | None = None,
    ) -> Decision:
        """Judge a model's `response` to the request `context` with the response-phase rules.

        The rules see the context plus a `response` section (spec 7.1). A policy
        without response rules abstains; when none matches the decision is allow
        (docs/language-decisions.md, "Response phase"). A `redact` obligation
        naming `response.text` puts the redacted text in
        `modifications["response.text"]` (unless a modify set that path).
        """
        start = _perf()
        if now is None and self._uses_now:
            now = time.time()
        env = Env(_with_response(context, response), now, facts)
        if self._r_drafts:
            decision = self._evaluate_with_shadow(env, trace, start, self._r_combined, self._r_view)
        else:
            outcome = _Outcome(trace)
            for policy in self._r_active:
                _run_policy(policy, env, outcome)
            decision = _decide(outcome, env, self._r_view, None, start)
        return _redact_response(decision, response)

    def response_stream(
        self,
        context: Mapping[str, Any],
        *,
        now: float | None = None,
        facts: Mapping[FactRequest, Any] | None = None,
        model: str | None = None,
    ) -> ResponseStream:
        """A stream judge for the response to `context` (spec 7.2); see policy_core.streams."""
        from policy_core.streams import ResponseStream, plan_stream  # deferred: regex analysis

        plan = self._stream_plan
        if plan is None:
            plan = plan_stream(self._r_active)
            _set(self, "_stream_plan", plan)
        return ResponseStream(self, plan, context, now=now, facts=facts, model=model)


class _ResponseView:
    """What `_decide` reads of a Selection, for the response phase: unmatched means allow."""

    __slots__ = ("_default", "_default_reason", "policy_set")

    def __init__(self, policy_set: str) -> None:
        self._default = "allow"
        self._default_reason: str | None = None
        self.policy_set = policy_set


def response_cost(context: Mapping[str, Any], response: Mapping[str, Any]) -> float | None:
    """`response.cost` as the rules see it (spec 7.1): the caller's, else usage at the prices."""
    from policy_core.compiler.facts import response_fact

    cost = response_fact(Env(_with_response(context, response), None, None), "cost")
    if type(cost) is int or type(cost) is float:
        return float(cost)
    return None


def _with_response(context: Mapping[str, Any], response: Mapping[str, Any]) -> dict[str, Any]:
    ctx = dict(context)
    ctx["response"] = response
    return ctx


def _redact_response(decision: Decision, response: Mapping[str, Any]) -> Decision:
    """Spec 7.1: a redact obligation on response.text gives the caller the text to pass on."""
    if decision.decision == "deny" or not decision.obligations:
        return decision
    redacts = [
        o for o in decision.obligations if type(o) is RedactObligation and RESPONSE_TEXT in o.fields
    ]
    if not redacts or RESPONSE_TEXT in decision.modifications:
        return decision
    text = response.get("text")
    if type(text) is not str:
        return decision
    return msgspec.structs.replace(
        decision,
        modifications={
            **decision.modifications,
            RESPONSE_TEXT: redact_response_text(text, redacts),
        },
    )


def redact_response_text(text: str, redacts: Sequence[RedactObligation]) -> str:
    """`text` with each redact obligation's pattern applied in turn."""
    from policy_core.primitives.redact import redact_context  # deferred: PII tables

    for obligation in redacts:
        text = redact_context({"t": text}, ["t"], obligation.pattern)["t"]
    return text


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

    `reuse`: the engine serving now, when this one replaces it after a change
    (a policy created, updated, deleted, its status changed). Every policy whose
    (id, digest, status) the old engine has compiled is taken from it as it is,
    rule index and regex sets included, and only the others are compiled
    (compiler.compile_policies). The old engine is not changed and may go on
    serving until the new one replaces it. Decisions are the same as a build
    from scratch. Policies built in code without a digest are always compiled.
    """

    def __init__(
        self,
        policies: Iterable[Policy] = (),
        *,
        default_decision: Literal["allow", "deny"] = "allow",
        reuse: PolicyEngine | None = None,
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
        self._compiled: CompiledSet = compile_policies(
            self._policies, reuse=reuse._compiled if reuse is not None else None
        )
        self._selections: dict[tuple[tuple[str, ...] | None, str | None], Selection] = {}
        self._everything = self._resolve(None, None)  # the unfiltered selection, most requests'

    @property
    def policies(self) -> tuple[Policy, ...]:
        return self._policies

    @property
    def default_decision(self) -> str:
        return self._default

    # --- selection ------------------------------------------------------

    def select(
        self, policies: Sequence[str] | None = None, namespace: str | None = None
    ) -> Selection:
        """The Selection of a request's filter; PolicyNotFound for an id that is not loaded.

        `policies` (ids) and `namespace` restrict the policies evaluated (both:
        the intersection); empty means not given. Cached per filter.
        """
        if not policies and not namespace:
            return self._everything
        key = _filter(policies, namespace)
        selection = self._selections.get(key)
        if selection is None:
            selection = self._resolve(*key)
            if len(self._selections) > 1024:
                self._selections.clear()  # callers with unbounded filter combinations
            self._selections[key] = selection
        return selection

    def _resolve(self, policies: tuple[str, ...] | None, namespace: str | None) -> Selection:
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
        return Selection(
            combined,
            policies=policies,
            namespace=namespace,
            default_decision=self._default,
            uses_now=self._compiled.uses_now,
        )

    def policy_set(
        self, policies: Sequence[str] | None = None, namespace: str | None = None
    ) -> str:
        """`sha256:...` identifying the exact selected revisions (and the engine default)."""
        return self.select(policies, namespace).policy_set

    # --- evaluation -----------------------------------------------------

    async def evaluate_async(
        self,
        context: Mapping[str, Any],
        *,
        usage: FactSource | None = None,
        integrations: IntegrationSource | None = None,
        record: bool = True,
        policies: Sequence[str] | None = None,
        namespace: str | None = None,
        trace: bool = False,
        now: float | None = None,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
    ) -> Decision:
        """Gather the facts the policies need (`Selection.gather_facts`), then evaluate.

        `usage` answers `rate_limit.count` and `budget.spent` (a UsageStore such as
        `policy_core.memory.MemoryUsageStore()`), `integrations` every other fact.
        An allowed request whose policies use `budget.spent` holds a reservation
        (`decision.reservation`, spec 7.3) unless `record` is False (dry run).
        """
        selection = self.select(policies, namespace)
        now = time.time() if now is None else now
        if not selection.uses_facts:
            return selection.evaluate(context, trace=trace, now=now)
        return await evaluate_with_facts(
            selection,
            context,
            usage=usage,
            integrations=integrations,
            record=record,
            trace=trace,
            now=now,
            reservation_ttl=reservation_ttl,
        )

    def evaluate_response(
        self,
        context: Mapping[str, Any],
        response: Mapping[str, Any],
        *,
        policies: Sequence[str] | None = None,
        namespace: str | None = None,
        trace: bool = False,
        now: float | None = None,
        facts: Mapping[FactRequest, Any] | None = None,
    ) -> Decision:
        """Judge the model's `response` to the request `context` (spec 7.1)."""
        return self.select(policies, namespace).evaluate_response(
            context, response, trace=trace, now=now, facts=facts
        )

    async def evaluate_response_async(
        self,
        context: Mapping[str, Any],
        response: Mapping[str, Any],
        *,
        usage: FactSource | None = None,
        integrations: IntegrationSource | None = None,
        record: bool = True,
        policies: Sequence[str] | None = None,
        namespace: str | None = None,
        trace: bool = False,
        now: float | None = None,
    ) -> Decision:
        """Gather the response phase's facts, then `evaluate_response`."""
        selection = self.select(policies, namespace)
        now = time.time() if now is None else now
        facts = None
        if selection.response_uses_facts:
            facts = await selection.gather_facts(
                context,
                usage=usage,
                integrations=integrations,
                record=record,
                now=now,
                response=response,
            )
        return selection.evaluate_response(context, response, trace=trace, now=now, facts=facts)

    def response_stream(
        self,
        context: Mapping[str, Any],
        *,
        policies: Sequence[str] | None = None,
        namespace: str | None = None,
        now: float | None = None,
        facts: Mapping[FactRequest, Any] | None = None,
    ) -> ResponseStream:
        """A stream judge for the response to `context` (spec 7.2): feed(delta), close(usage)."""
        return self.select(policies, namespace).response_stream(context, now=now, facts=facts)

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
        # Positional: a call without keywords is the one CPython specialises.
        if policies is None and namespace is None:
            return self._everything.evaluate(context, trace, now, facts)
        return self.select(policies, namespace).evaluate(context, trace, now, facts)


async def evaluate_with_facts(
    selection: Selection,
    context: Mapping[str, Any],
    *,
    usage: FactSource | None,
    integrations: IntegrationSource | None,
    record: bool,
    trace: bool,
    now: float,
    reservation_ttl: float = DEFAULT_RESERVATION_TTL,
) -> Decision:
    """Gather facts, evaluate, and keep or release the reservation (spec 7.3).

    The reservation is taken with the reads, in the usage store's one atomic
    round trip, so that concurrent requests see each other's holds and cannot
    overshoot a cap; a request that is then not allowed releases it at once.
    It is held only when the budget facts were read (the store answered).
    """
    wanted = selection.fact_requests(context, now=now)
    reserve = None
    if record and usage is not None and hasattr(usage, "release"):
        reserve = selection.reservation(context, wanted, now=now, ttl=reservation_ttl)
    facts = await selection.gather_facts(
        context,
        usage=usage,
        integrations=integrations,
        record=record,
        now=now,
        reserve=reserve,
        wanted=wanted,
    )
    decision = selection.evaluate(context, trace=trace, now=now, facts=facts)
    if reserve is None:
        return decision
    held = any(r[0] == "budget.spent" and r in facts for r in wanted)
    if held and decision.allowed:
        return msgspec.structs.replace(decision, reservation=reserve)
    if held:
        try:
            await usage.release(reserve.id)  # type: ignore[union-attr]
        except Exception:
            # Not released: it stops counting when it expires.
            _log.warning("could not release reservation %s", reserve.id, exc_info=True)
    return decision


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
    selection: Selection | _ResponseView,
    shadow: Decision | None,
    start: float,
) -> Decision:
    matches = out.matches
    if not matches:
        default = selection._default
        return Decision(
            decision=default,  # type: ignore[arg-type]
            allowed=default != "deny",
            reason=selection._default_reason,
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
    selection: Selection | _ResponseView,
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
