"""EvaluationService: cache -> facts -> engine -> decision log -> governance.

The hot path does no I/O of its own: the L1 cache answers in process, the
decision log only queues, and usage facts are fetched only for policy sets
that use them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from policy_core.clock import SystemClock
from policy_core.engine import PolicyEngine
from policy_core.model import AuditObligation, Decision, RedactObligation
from policy_core.ports import (
    Clock,
    CostOracle,
    DecisionCache,
    DecisionLog,
    DecisionRecord,
    FactRequest,
    GovernanceSink,
    ShieldScanner,
    UsageStore,
)
from policy_core.primitives import redact_context
from policy_core.services.holder import EngineHolder
from policy_core.services.records import EvaluationRequest, EvaluationResult

__all__ = ["EvaluationService", "canonical_json", "context_digest", "with_digest"]

_log = logging.getLogger(__name__)
# enc_hook: a library caller may pass values JSON cannot hold; digest their str().
_encoder = msgspec.json.Encoder(order="sorted", enc_hook=str)
_USAGE_KINDS = frozenset({"rate_limit.count", "budget.spent"})
_perf = time.perf_counter


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no spaces: the form digests and cache keys are taken of."""
    return _encoder.encode(value)


def context_digest(context: Mapping[str, Any]) -> str:
    """`sha256:<hex>` of the canonical JSON of a context."""
    return "sha256:" + hashlib.sha256(canonical_json(context)).hexdigest()


def with_digest(record: DecisionRecord) -> DecisionRecord:
    """The record with its context digest filled in.

    The evaluation leaves the digest of an unredacted context to the decision
    log's writer (4 µs of canonical JSON and SHA-256 off the request path); a
    log calls this before it stores or hands out a record.
    """
    if record.context_digest:
        return record
    return msgspec.structs.replace(record, context_digest=context_digest(record.context))


class EvaluationService:
    """Evaluates requests against `holder.current`, the engine in force.

    Every port is optional: without a cache nothing is cached, without a log
    nothing is recorded, without a usage store stateful facts are missing (and
    the policies using them fail as their `fail_open` says).
    """

    def __init__(
        self,
        holder: EngineHolder,
        *,
        cache: DecisionCache | None = None,
        usage: UsageStore | None = None,
        log: DecisionLog | None = None,
        clock: Clock | None = None,
        shield: ShieldScanner | None = None,
        cost: CostOracle | None = None,
        governance: GovernanceSink | None = None,
        integration_timeout: float = 1.0,
    ) -> None:
        self._holder = holder
        self._cache, self._usage, self._log = cache, usage, log
        self._clock: Clock = clock or SystemClock()
        self._shield, self._cost, self._governance = shield, cost, governance
        self._timeout = integration_timeout
        self._audit_engine: PolicyEngine | None = None
        self._audit_modes: dict[str, str] = {}
        self._nomatch_audit: dict[tuple[tuple[str, ...] | None, str | None], bool] = {}

    async def evaluate(self, request: EvaluationRequest) -> EvaluationResult:
        """Decide one request. Raises PolicyNotFound for an unknown id in `request.policies`."""
        start = _perf()
        engine = self._holder.current
        request_id = request.request_id or os.urandom(16).hex()  # uuid4().hex costs 4x more
        if request.policies is not None and type(request.policies) is not tuple:
            # Callers may build the request with a list; selections are keyed by tuples.
            request = msgspec.structs.replace(request, policies=tuple(request.policies))
        sel = (request.policies, request.namespace)
        key: str | None = None
        ttl = 0
        cacheable = not (request.dry_run or request.trace)
        if self._cache is not None and cacheable and not engine.uses_stateful_facts(*sel):
            ttl = engine.cache_ttl(*sel)
        if ttl > 0 and self._cache is not None:
            key = self._cache_key(engine.policy_set(*sel), request)
            hit = await self._cache.get(key)
            if hit is not None:
                self._record(engine, request, request_id, hit, start)
                return EvaluationResult(decision=hit, request_id=request_id, cached=True)
        now = self._clock.time()
        facts = (
            await self._facts(engine, request, now) if engine.uses_stateful_facts(*sel) else None
        )
        decision = engine.evaluate(
            request.context,
            policies=request.policies,
            namespace=request.namespace,
            trace=request.trace,
            now=now,
            facts=facts,
        )
        if key is not None and self._cache is not None:
            await self._cache.set(key, decision, ttl)
        self._record(engine, request, request_id, decision, start)
        return EvaluationResult(decision=decision, request_id=request_id, cached=False)

    async def evaluate_batch(self, requests: Sequence[EvaluationRequest]) -> list[EvaluationResult]:
        """Decide each request in order; results are in the same order."""
        return [await self.evaluate(r) for r in requests]

    # --- facts --------------------------------------------------------------

    async def _facts(
        self, engine: PolicyEngine, request: EvaluationRequest, now: float
    ) -> dict[FactRequest, Any]:
        wanted = engine.fact_requests(
            request.context, policies=request.policies, namespace=request.namespace, now=now
        )
        facts: dict[FactRequest, Any] = {}
        usage = [r for r in wanted if r[0] in _USAGE_KINDS]
        if usage and self._usage is not None:
            try:
                facts.update(await self._usage.fetch(usage, record=not request.dry_run))
            except Exception:
                # Missing facts become evaluation errors: the policy's fail mode decides.
                _log.warning("usage store unavailable; stateful facts missing", exc_info=True)
        others = [r for r in wanted if r[0] not in _USAGE_KINDS]
        if others:
            values = await asyncio.gather(*(self._integration(r) for r in others))
            facts.update((r, v) for r, v in zip(others, values, strict=True) if v is not None)
        return facts

    async def _integration(self, request: FactRequest) -> Any:
        try:
            if request[0] == "shield.scan" and self._shield is not None:
                return await asyncio.wait_for(self._shield.scan(str(request[1])), self._timeout)
            if request[0] == "costops.estimate" and self._cost is not None:
                provider, model, prompt_tokens, max_tokens = request[1:5]
                call = self._cost.estimate(
                    str(provider), str(model), int(prompt_tokens or 0), int(max_tokens or 0)
                )
                return await asyncio.wait_for(call, self._timeout)
        except Exception:
            _log.warning("integration fact %s unavailable", request[0], exc_info=True)
        return None

    # --- cache key and audit ------------------------------------------------

    @staticmethod
    def _cache_key(policy_set: str, request: EvaluationRequest) -> str:
        raw = canonical_json([request.context, request.policies, request.namespace])
        return f"{policy_set}:{hashlib.sha256(raw).hexdigest()}"

    def _record(
        self,
        engine: PolicyEngine,
        request: EvaluationRequest,
        request_id: str,
        decision: Decision,
        start: float,
    ) -> None:
        if request.dry_run or (self._log is None and self._governance is None):
            return
        if not self._audited(engine, request, decision):
            return
        context: Mapping[str, Any] = request.context
        # Deferred to the log's writer (see with_digest) unless redaction is about
        # to change the context, or a governance sink takes the record as it is.
        digest = ""
        if decision.obligations and any(
            isinstance(o, RedactObligation) for o in decision.obligations
        ):
            digest = context_digest(context)
            context = _redacted(context, decision)
        elif self._governance is not None:
            digest = context_digest(context)
        record = DecisionRecord(
            request_id=request_id,
            policy_set=decision.policy_set,
            decision=decision.decision,
            matched_policies=decision.matched_policies,
            matched_rules=decision.matched_rules,
            reason=decision.reason,
            context_digest=digest,
            context=context if type(context) is dict else dict(context),
            detail=decision,
            latency_ms=(_perf() - start) * 1000.0,
            created_at=self._clock.now(),
        )
        if self._log is not None:
            self._log.append(record)
        if self._governance is not None:
            self._governance.submit(record)

    def _audited(self, engine: PolicyEngine, request: EvaluationRequest, d: Decision) -> bool:
        """Whether `config.audit` of the policies involved (or an audit obligation) asks for it."""
        if d.obligations and any(isinstance(o, AuditObligation) for o in d.obligations):
            return True
        if engine is not self._audit_engine:
            self._audit_engine = engine
            self._audit_modes = {p.id: p.config.audit for p in engine.policies}
            self._nomatch_audit = {}
        if d.matched_policies:
            return any(_wants(self._audit_modes.get(p, "all"), d) for p in d.matched_policies)
        # Nothing matched: the request is audited unless every selected policy opted out.
        sel = (request.policies, request.namespace)
        audited = self._nomatch_audit.get(sel)
        if audited is None:
            modes = [
                p.config.audit
                for p in engine.policies
                if (request.policies is None or p.id in request.policies)
                and (request.namespace is None or p.namespace == request.namespace)
            ]
            audited = not modes or any(m != "none" for m in modes)
            self._nomatch_audit[sel] = audited
        return audited


def _redacted(context: Mapping[str, Any], decision: Decision) -> Mapping[str, Any]:
    """The context with the decision's `redact` obligations applied (never mutated in place)."""
    for obligation in decision.obligations:
        if isinstance(obligation, RedactObligation):
            try:
                context = redact_context(context, obligation.fields, obligation.pattern)
            except ValueError as exc:
                # Never store what should have been redacted: keep nothing instead.
                _log.warning("redaction failed (%s); the stored context is withheld", exc)
                return {"redaction_failed": str(exc)}
    return context


def _wants(mode: str, decision: Decision) -> bool:
    return mode == "all" or (mode == "decisions_other_than_allow" and decision.decision != "allow")
