"""Evaluation routes: one request, a batch, the audit history and its statistics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromQuery, JSONBody, QueryParameter
from policy_core.ports import HistoryQuery
from policy_core.services import DecisionHistoryService

from policy_http._evaluation import Evaluations
from policy_http._http import problems
from policy_http._problems import ApiProblem
from policy_http._runtime import Runtime
from policy_http.schemas import (
    BatchRequest,
    BatchResponse,
    EvaluateRequest,
    EvaluateResponse,
    EvaluateResponseRequest,
    HistoryItem,
    HistoryList,
    StatsResponse,
)

__all__ = ["evaluate_routes"]

_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKey": []}]


def evaluate_routes(rt: Runtime, evaluations: Evaluations) -> list[HTTPRouteHandler]:
    """The /evaluate routes over this app's runtime.

    The app's fast path (_fastpath.py, a hand-written copy of these two
    handlers) answers POST /evaluate and /evaluate/batch with JSON bodies
    before Litestar routes them; these handlers describe the routes in the
    OpenAPI document and serve the requests the fast path leaves alone.
    test_http_fastpath_parity.py::test_same_status_and_body pins the two.
    """

    @post(
        "/evaluate",
        opt={"permission": "evaluate", "rate_class": "evaluate"},
        status_code=200,
        responses=problems(404, 413, 422),
        security=_SECURITY,
        summary="Evaluate one request",
    )
    async def evaluate(
        request: Request[Any, Any, Any], data: JSONBody[EvaluateRequest]
    ) -> EvaluateResponse:
        return await evaluations.one(data, request.scope["state"].get("request_id"))

    @post(
        "/evaluate/response",
        opt={"permission": "evaluate", "rate_class": "evaluate"},
        status_code=200,
        responses=problems(404, 413, 422),
        security=_SECURITY,
        summary="Judge a model's response with the response-phase rules",
        description=(
            "`{context, response, request_id?, reservation?}`: the request's context and the "
            "response section (text, finish_reason, model, tool_calls, usage). The decision is "
            "logged as `<request_id>.response`, linked to the request's decision; a redaction "
            'of the text is `modifications["response.text"]`; with `reservation` and `usage` '
            "the reservation is settled at `response.cost`."
        ),
    )
    async def evaluate_response(
        request: Request[Any, Any, Any], data: JSONBody[EvaluateResponseRequest]
    ) -> EvaluateResponse:
        return await evaluations.response(data, request.scope["state"].get("request_id"))

    @post(
        "/evaluate/batch",
        opt={"permission": "evaluate", "rate_class": "evaluate"},
        status_code=200,
        responses=problems(413, 422),
        security=_SECURITY,
        summary="Evaluate up to 1,000 requests; decisions in order",
        description=(
            "Each request is answered one by one, in order: a decision, or, for a request "
            "that cannot be decided (an unknown policy id, a context beyond the limits), an "
            "error entry `{index, request_id, status, type, error}` in its place."
        ),
    )
    async def evaluate_batch(data: JSONBody[BatchRequest]) -> BatchResponse:
        return await evaluations.batch(data)

    @get(
        "/evaluate/history",
        opt={"permission": "history:read", "rate_class": "read"},
        responses=problems(503),
        security=_SECURITY,
        summary="Audit records of past decisions (newest first)",
    )
    async def history(
        request_id: Annotated[str | None, QueryParameter(max_length=128)] = None,
        policy_id: Annotated[str | None, QueryParameter(max_length=128)] = None,
        decision: Annotated[
            str | None, QueryParameter(pattern="^(allow|deny|warn|modify)$", max_length=8)
        ] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        shadow_differs: Annotated[
            bool,
            QueryParameter(description="Only decisions whose shadow decided otherwise."),
        ] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=512)] = None,
    ) -> HistoryList:
        query = HistoryQuery(
            request_id=request_id,
            policy_id=policy_id,
            decision=decision,
            since=_aware(since),
            until=_aware(until),
            shadow_differs=shadow_differs,
        )
        try:
            page = await _decisions(rt).history(query, limit=limit, cursor=cursor)
        except ValueError as exc:
            raise ApiProblem(400, str(exc)) from None
        return HistoryList(
            items=[HistoryItem.of(r) for r in page.items], next_cursor=page.next_cursor
        )

    @get(
        "/evaluate/stats",
        opt={"permission": "history:read", "rate_class": "read"},
        responses=problems(503),
        security=_SECURITY,
        summary="Counts by decision, policy and rule, and latency percentiles",
    )
    async def stats(days: Annotated[int, QueryParameter(ge=1, le=366)] = 1) -> StatsResponse:
        s = await _decisions(rt).stats(days)
        return StatsResponse(
            total=s.total,
            by_decision=s.by_decision,
            by_policy=s.by_policy,
            by_rule=s.by_rule,
            latency_ms=s.latency_ms,
            since=s.since,
            until=s.until,
        )

    return [evaluate, evaluate_response, evaluate_batch, history, stats]


def _aware(moment: datetime | None) -> datetime | None:
    """RFC 3339 times carry an offset; a bare one is taken as UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _decisions(rt: Runtime) -> DecisionHistoryService:
    history = rt.services.decisions
    if history is None:
        raise ApiProblem(503, "no decision log is configured on this server", code="no_history")
    return history
