"""EvaluationService: cache -> facts -> engine -> decision log -> governance.

The hot path does no I/O of its own: the L1 cache answers in process, the
decision log only queues, and usage facts are fetched only for policy sets
that use them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from policy_core.clock import SystemClock
from policy_core.engine import (
    DEFAULT_RESERVATION_TTL,
    IntegrationSource,
    Selection,
    evaluate_with_facts,
    response_cost,
)
from policy_core.errors import PolicyNotFound
from policy_core.model import AuditObligation, Decision, RedactObligation
from policy_core.ports import (
    Clock,
    DecisionCache,
    DecisionLog,
    DecisionRecord,
    GovernanceSink,
    UsageEvent,
    UsageSink,
    UsageStore,
)
from policy_core.primitives import redact_context
from policy_core.services.holder import EngineHolder
from policy_core.services.records import (
    EvaluationRequest,
    EvaluationResult,
    ResponseEvaluationRequest,
    Settlement,
    response_record_id,
)
from policy_core.streams import ResponseStream, StreamChunk

__all__ = [
    "EvaluationService",
    "ServiceResponseStream",
    "canonical_json",
    "context_digest",
    "with_digest",
]

_log = logging.getLogger(__name__)
# enc_hook: a library caller may pass values JSON cannot hold; digest their str().
_encoder = msgspec.json.Encoder(order="sorted", enc_hook=str)
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
        integrations: IntegrationSource | None = None,
        governance: GovernanceSink | None = None,
        usage_sink: UsageSink | None = None,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
    ) -> None:
        self._holder = holder
        self._reservation_ttl = reservation_ttl
        self._cache, self._usage, self._log = cache, usage, log
        self._clock: Clock = clock or SystemClock()
        self._governance = governance
        # CostOps `track`: a reservation settled by a response is recorded usage.
        self._usage_sink = usage_sink
        # Integration facts (policy_core.integrations.IntegrationFacts); without
        # it a rule using one has the error "<integration> is not configured".
        self._integrations = integrations

    async def evaluate(self, request: EvaluationRequest) -> EvaluationResult:
        """Decide one request. Raises PolicyNotFound for an unknown id in `request.policies`."""
        start = _perf()
        # One resolution of the filter answers every question about this request.
        selection = self._holder.current.select(request.policies, request.namespace)
        request_id = request.request_id or os.urandom(16).hex()  # uuid4().hex costs 4x more
        key: str | None = None
        ttl = 0
        if (
            self._cache is not None
            and not (request.dry_run or request.trace or selection.uses_facts)
            and (ttl := selection.cache_ttl) > 0
        ):
            key = _cache_key(selection, request)
            hit = await self._cache.get(key)
            if hit is not None:
                self._record(selection, request, request_id, hit, start)
                return EvaluationResult(decision=hit, request_id=request_id, cached=True)
        now = self._clock.time()
        if selection.uses_facts:
            # Facts, evaluation, and the budget reservation of an allowed request (spec 7.3).
            decision = await evaluate_with_facts(
                selection,
                request.context,
                usage=self._usage,
                integrations=self._integrations,
                record=not request.dry_run,
                trace=request.trace,
                now=now,
                reservation_ttl=self._reservation_ttl,
            )
        else:
            decision = selection.evaluate(request.context, trace=request.trace, now=now)
        if key is not None and self._cache is not None:
            await self._cache.set(key, decision, ttl)
        self._record(selection, request, request_id, decision, start)
        return EvaluationResult(decision=decision, request_id=request_id, cached=False)

    async def evaluate_response(self, request: ResponseEvaluationRequest) -> EvaluationResult:
        """Judge a model's response (spec 7.1); see `judge_response`."""
        return (await self.judge_response(request))[0]

    async def judge_response(
        self, request: ResponseEvaluationRequest
    ) -> tuple[EvaluationResult, Settlement | None]:
        """Judge a model's response (spec 7.1) with the response-phase rules.

        Facts are gathered for the response phase's rules; the decision is
        logged (unless a dry run) under `response_record_id(request_id)`, so it
        is linked to the request's decision, with the response section in the
        stored context (redacted as the decision says). With `reservation` and
        `usage` in the response, the reservation is settled at `response.cost`
        (spec 7.3). Never cached. The result's `request_id` is the request's.
        Also answers the settlement: None without a reservation (or a usage
        store), else whether the reservation was settled and at what cost.
        """
        start = _perf()
        selection = self._holder.current.select(request.policies, request.namespace)
        request_id = request.request_id or os.urandom(16).hex()
        now = self._clock.time()
        facts = None
        if selection.response_uses_facts:
            facts = await selection.gather_facts(
                request.context,
                usage=self._usage,
                integrations=self._integrations,
                record=not request.dry_run,
                now=now,
                response=request.response,
            )
        decision = selection.evaluate_response(
            request.context, request.response, trace=request.trace, now=now, facts=facts
        )
        settlement: Settlement | None = None
        if request.reservation and self._usage is not None and not request.dry_run:
            cost = response_cost(request.context, request.response)
            settlement = Settlement(reservation=request.reservation, settled=False, cost=cost)
            if cost is not None:
                try:
                    keys = await self._usage.settle(request.reservation, cost)
                    settlement = Settlement(
                        reservation=request.reservation, settled=keys is not None, cost=cost
                    )
                    if keys is not None and self._usage_sink is not None:
                        self._usage_sink.submit(
                            _usage_event(
                                request_id, cost, self._clock, request.context, request.response
                            )
                        )
                except Exception:
                    # The reservation then expires after its TTL (spec 7.3); the decision stands.
                    _log.warning(
                        "settling reservation %s failed", request.reservation, exc_info=True
                    )
        context = dict(request.context)
        context["response"] = request.response
        self._record(
            selection,
            EvaluationRequest(context=context, dry_run=request.dry_run),
            response_record_id(request_id),
            decision,
            start,
        )
        return EvaluationResult(decision=decision, request_id=request_id, cached=False), settlement

    async def response_stream(self, request: ResponseEvaluationRequest) -> ServiceResponseStream:
        """A stream judge (spec 7.2) for the response to `request.context`.

        `request.response` may hold what is known before the first delta
        (`model`). Facts of the response phase are gathered once, here, without
        recording (the close's `judge_response` gathers and records them).
        Raises PolicyNotFound for an unknown id in `request.policies`.
        """
        selection = self._holder.current.select(request.policies, request.namespace)
        now = self._clock.time()
        model = request.response.get("model")
        facts = None
        if selection.response_uses_facts:
            facts = await selection.gather_facts(
                request.context,
                usage=self._usage,
                integrations=self._integrations,
                record=False,
                now=now,
                response={"text": ""},
            )
        judge = selection.response_stream(
            request.context, now=now, facts=facts, model=model if isinstance(model, str) else None
        )
        return ServiceResponseStream(self, request, judge)

    async def evaluate_batch(self, requests: Sequence[EvaluationRequest]) -> list[EvaluationResult]:
        """Decide each request in order; results are in the same order."""
        return [await self.evaluate(r) for r in requests]

    async def evaluate_each(
        self, requests: Sequence[EvaluationRequest]
    ) -> list[EvaluationResult | PolicyNotFound]:
        """Decide each request in order, one by one: a request naming an unknown policy
        gets its PolicyNotFound in its place and the others their decisions. Errors
        of the deployment (a store down) still raise: they are no request's fault."""
        out: list[EvaluationResult | PolicyNotFound] = []
        for request in requests:
            try:
                out.append(await self.evaluate(request))
            except PolicyNotFound as exc:
                out.append(exc)
        return out

    # --- audit ----------------------------------------------------------------

    def _record(
        self,
        selection: Selection,
        request: EvaluationRequest,
        request_id: str,
        decision: Decision,
        start: float,
    ) -> None:
        if request.dry_run or (self._log is None and self._governance is None):
            return
        if not _audited(selection, decision):
            return
        context: Mapping[str, Any] = request.context
        # Deferred to the log's writer (see with_digest) unless redaction is about
        # to change the context. The governance sink sends no digest (audit/log has none).
        digest = ""
        if decision.obligations and any(
            isinstance(o, RedactObligation) for o in decision.obligations
        ):
            digest = context_digest(context)
            context = _redacted(context, decision)
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


def _text(section: Any, key: str) -> str | None:
    value = section.get(key) if isinstance(section, Mapping) else None
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _tokens(usage: Any, key: str) -> int:
    value = usage.get(key) if isinstance(usage, Mapping) else None
    return value if type(value) is int and value >= 0 else 0


def _usage_event(
    request_id: str,
    cost: float,
    clock: Clock,
    context: Mapping[str, Any],
    response: Mapping[str, Any],
) -> UsageEvent:
    """The CostOps track event of a response's settled usage (ids from the request's context)."""
    llm = context.get("llm")
    usage = response.get("usage")
    return UsageEvent(
        request_id=request_id,
        cost=cost,
        timestamp=clock.now(),
        user_id=_text(context.get("user"), "id"),
        team_id=_text(context.get("team"), "id"),
        project_id=_text(context.get("project"), "id"),
        provider=_text(llm, "provider"),
        model=_text(response, "model") or _text(llm, "model"),
        prompt_tokens=_tokens(usage, "prompt_tokens"),
        completion_tokens=_tokens(usage, "completion_tokens"),
    )


def _cache_key(selection: Selection, request: EvaluationRequest) -> str:
    raw = canonical_json([request.context, selection.policies, selection.namespace])
    return f"{selection.policy_set}:{hashlib.sha256(raw).hexdigest()}"


def _audited(selection: Selection, d: Decision) -> bool:
    """Whether `config.audit` of the policies involved (or an audit obligation) asks for it."""
    if d.obligations and any(isinstance(o, AuditObligation) for o in d.obligations):
        return True
    if d.matched_policies:
        modes = selection.audit_modes
        return any(_wants(modes.get(p, "all"), d) for p in d.matched_policies)
    # Nothing matched: the request is audited unless every selected policy opted out.
    return selection.audits_unmatched


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


class ServiceResponseStream:
    """One streamed response judged through the service (spec 7.2).

    `feed` is the engine's stream judge; `close` is `judge_response` on the
    whole text (facts, settlement of the reservation, the decision logged
    and linked to the request's), so the final decision is exactly the one
    `evaluate_response` gives; the rest is the text that decision passes on,
    after what was released.
    """

    __slots__ = ("_closed", "_judge", "_parts", "_request", "_service")

    def __init__(
        self,
        service: EvaluationService,
        request: ResponseEvaluationRequest,
        judge: ResponseStream,
    ) -> None:
        self._service = service
        self._request = request
        self._judge = judge
        self._parts: list[str] = []
        self._closed = False

    def feed(self, delta: str) -> StreamChunk:
        """The text that may be released now (possibly ""), and the deny once a rule denies."""
        if self._closed:
            raise RuntimeError("the stream is closed")
        self._parts.append(delta)
        return self._judge.feed(delta)

    async def close(
        self,
        usage: Mapping[str, Any] | None = None,
        *,
        finish_reason: str | None = None,
        tool_calls: list[Any] | None = None,
        model: str | None = None,
        cost: float | None = None,
    ) -> tuple[StreamChunk, EvaluationResult, Settlement | None]:
        """The rest of the text with the final decision, the result, and the settlement."""
        if self._closed:
            raise RuntimeError("the stream is closed")
        self._closed = True
        given = {
            "model": model,
            "usage": usage,
            "finish_reason": finish_reason,
            "tool_calls": tool_calls,
            "cost": cost,
        }
        response: dict[str, Any] = dict(self._request.response)
        response["text"] = "".join(self._parts)
        response.update({k: v for k, v in given.items() if v is not None})
        result, settlement = await self._service.judge_response(
            msgspec.structs.replace(self._request, response=response)
        )
        decision = result.decision
        if decision.decision == "deny":
            return StreamChunk("", decision), result, settlement
        passed = decision.modifications.get("response.text", response["text"])
        if type(passed) is not str:
            passed = response["text"]
        return StreamChunk(passed[self._judge.released :], decision), result, settlement
