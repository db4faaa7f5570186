"""Evaluation routes: one request, a batch, the audit history and its statistics.

`POST /evaluate` is the hot path: Litestar decodes the body with a decoder
built once for `EvaluateRequest`, the context limits walk it once, and the
response is the decision mapped field by field. No body is logged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import Parameter
from policy_core.ports import HistoryQuery
from policy_core.services import EvaluationRequest, EvaluationResult

from policy_http._http import problems
from policy_http._limits import ContextTooLarge, check_context
from policy_http._problems import ApiProblem
from policy_http._runtime import Runtime
from policy_http.schemas import (
    BatchRequest,
    BatchResponse,
    EvaluateRequest,
    EvaluateResponse,
    HistoryItem,
    HistoryList,
    StatsResponse,
)

__all__ = ["evaluate_routes"]

_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKey": []}]


def evaluate_routes(rt: Runtime) -> list[HTTPRouteHandler]:
    """The /evaluate routes over this app's runtime."""
    settings = rt.settings
    max_depth, max_items = settings.max_context_depth, settings.max_context_items
    metrics = rt.metrics
    telemetry = rt.telemetry

    def to_core(body: EvaluateRequest, default_id: str | None) -> EvaluationRequest:
        try:
            check_context(body.context, max_depth, max_items)
        except ContextTooLarge as exc:
            raise ApiProblem(422, str(exc), code="context_too_large") from None
        return EvaluationRequest(
            context=body.context,
            policies=tuple(body.policies) if body.policies is not None else None,
            namespace=body.namespace,
            dry_run=body.dry_run,
            trace=body.trace,
            request_id=body.request_id or default_id,
        )

    def to_wire(result: EvaluationResult) -> EvaluateResponse:
        d = result.decision
        metrics.observe_decision(d.decision, d.matched_policies, result.cached)
        return EvaluateResponse.of(d, result.request_id, result.cached)

    @post(
        "/evaluate",
        opt={"permission": "evaluate", "rate_class": "evaluate"},
        status_code=200,
        responses=problems(404, 413, 422),
        security=_SECURITY,
        summary="Evaluate one request",
    )
    async def evaluate(request: Request[Any, Any, Any], data: EvaluateRequest) -> EvaluateResponse:
        # Without a request_id in the body, the decision takes the HTTP request's id.
        core = to_core(data, request.scope["state"].get("request_id"))
        if telemetry.enabled:
            with telemetry.span("policy.evaluate", dry_run=core.dry_run):
                result = await rt.services.evaluation.evaluate(core)
        else:
            result = await rt.services.evaluation.evaluate(core)
        return to_wire(result)

    @post(
        "/evaluate/batch",
        opt={"permission": "evaluate", "rate_class": "evaluate"},
        status_code=200,
        responses=problems(404, 413, 422),
        security=_SECURITY,
        summary="Evaluate up to 1,000 requests; decisions in order",
    )
    async def evaluate_batch(data: BatchRequest) -> BatchResponse:
        if len(data.requests) > settings.max_batch:
            raise ApiProblem(
                422, f"a batch holds at most {settings.max_batch} requests", code="batch_too_large"
            )
        requests = [to_core(item, None) for item in data.requests]
        if telemetry.enabled:
            with telemetry.span("policy.evaluate_batch", size=len(requests)):
                results = await rt.services.evaluation.evaluate_batch(requests)
        else:
            results = await rt.services.evaluation.evaluate_batch(requests)
        return BatchResponse(decisions=[to_wire(r) for r in results])

    @get(
        "/evaluate/history",
        opt={"permission": "history:read", "rate_class": "read"},
        responses=problems(503),
        security=_SECURITY,
        summary="Audit records of past decisions (newest first)",
    )
    async def history(
        request_id: Annotated[str | None, Parameter(max_length=128)] = None,
        policy_id: Annotated[str | None, Parameter(max_length=128)] = None,
        decision: Annotated[
            str | None, Parameter(pattern="^(allow|deny|warn|modify)$", max_length=8)
        ] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Parameter(max_length=512)] = None,
    ) -> HistoryList:
        log = _decisions(rt)
        query = HistoryQuery(
            request_id=request_id,
            policy_id=policy_id,
            decision=decision,
            since=_aware(since),
            until=_aware(until),
        )
        try:
            page = await log.history(query, limit=limit, cursor=cursor)
        except (ValueError, TypeError, IndexError, KeyError):
            raise ApiProblem(400, "invalid cursor; pass back a next_cursor unchanged") from None
        items = [
            HistoryItem(
                request_id=r.request_id,
                policy_set=r.policy_set,
                decision=r.decision,
                matched_policies=r.matched_policies,
                matched_rules=r.matched_rules,
                reason=r.reason,
                context_digest=r.context_digest,
                context=r.context,
                latency_ms=r.latency_ms,
                created_at=r.created_at,
            )
            for r in page.items
        ]
        return HistoryList(items=items, next_cursor=page.next_cursor)

    @get(
        "/evaluate/stats",
        opt={"permission": "history:read", "rate_class": "read"},
        responses=problems(503),
        security=_SECURITY,
        summary="Counts by decision, policy and rule, and latency percentiles",
    )
    async def stats(days: Annotated[int, Parameter(ge=1, le=366)] = 1) -> StatsResponse:
        until = datetime.now(UTC)
        s = await _decisions(rt).stats(until - timedelta(days=days), until)
        return StatsResponse(
            total=s.total,
            by_decision=s.by_decision,
            by_policy=s.by_policy,
            by_rule=s.by_rule,
            latency_ms=s.latency_ms,
            since=s.since,
            until=s.until,
        )

    return [evaluate, evaluate_batch, history, stats]


def _aware(moment: datetime | None) -> datetime | None:
    """RFC 3339 times carry an offset; a bare one is taken as UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _decisions(rt: Runtime) -> Any:
    log = rt.services.decisions
    if log is None:
        raise ApiProblem(503, "no decision log is configured on this server", code="no_history")
    return log
