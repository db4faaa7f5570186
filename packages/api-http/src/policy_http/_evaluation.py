"""The evaluation use of the API, shared by the Litestar routes and the fast path.

Maps wire requests to `EvaluationRequest` (after the context limits), calls
the EvaluationService, counts the decisions and maps them back.
"""

from __future__ import annotations

from collections import Counter

from policy_core.services import EvaluationRequest, EvaluationResult, ResponseEvaluationRequest

from policy_http._limits import ContextTooLarge, check_context, within_limits
from policy_http._problems import PROBLEM_TYPE_PREFIX, ApiProblem, classify
from policy_http._runtime import Runtime
from policy_http.schemas import (
    BatchDecision,
    BatchItemError,
    BatchRequest,
    BatchResponse,
    EvaluateRequest,
    EvaluateResponse,
    EvaluateResponseRequest,
)

__all__ = ["Evaluations"]


class Evaluations:
    """Evaluate one request or a batch, for one app."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._depth = rt.settings.max_context_depth
        self._items = rt.settings.max_context_items
        self._max_batch = rt.settings.max_batch
        self._metrics = rt.metrics
        self._telemetry = rt.telemetry

    def bounded(self, raw: bytes) -> bool:
        """True when a raw body is too small to break the context limits (no walk needed)."""
        return within_limits(raw, self._depth, self._items)

    def to_core(
        self, body: EvaluateRequest, default_id: str | None, checked: bool = False
    ) -> EvaluationRequest:
        if not checked:
            try:
                check_context(body.context, self._depth, self._items)
            except ContextTooLarge as exc:
                raise ApiProblem(422, str(exc), code="context_too_large") from None
        return EvaluationRequest(
            context=body.context,
            # As given: the engine's `select` normalises the filter (empty = not given).
            policies=body.policies,
            namespace=body.namespace,
            dry_run=body.dry_run,
            trace=body.trace,
            request_id=body.request_id or default_id,
        )

    def to_wire(self, result: EvaluationResult) -> EvaluateResponse:
        d = result.decision
        errors = (e.policy for e in d.errors)
        self._metrics.observe_decision(d.decision, d.matched_policies, result.cached, 1, errors)
        return EvaluateResponse.of(d, result.request_id, result.cached)

    async def one(
        self, body: EvaluateRequest, default_id: str | None, checked: bool = False
    ) -> EvaluateResponse:
        """Decide one request; without a request_id it takes `default_id` (the HTTP one).

        `checked`: the caller already knows the context is within the limits.
        """
        core = self.to_core(body, default_id, checked)
        service = self._rt.services.evaluation
        if self._telemetry.enabled:
            with self._telemetry.span("policy.evaluate", dry_run=core.dry_run):
                result = await service.evaluate(core)
        else:
            result = await service.evaluate(core)
        return self.to_wire(result)

    async def response(
        self, body: EvaluateResponseRequest, default_id: str | None
    ) -> EvaluateResponse:
        """Judge a model's response (spec 7.1); the context and the response within the limits."""
        try:
            check_context(
                {"context": body.context, "response": body.response}, self._depth, self._items
            )
        except ContextTooLarge as exc:
            raise ApiProblem(422, str(exc), code="context_too_large") from None
        core = ResponseEvaluationRequest(
            context=body.context,
            response=body.response,
            policies=body.policies,
            namespace=body.namespace,
            dry_run=body.dry_run,
            trace=body.trace,
            request_id=body.request_id or default_id,
            reservation=body.reservation,
        )
        service = self._rt.services.evaluation
        if self._telemetry.enabled:
            with self._telemetry.span("policy.evaluate_response", dry_run=core.dry_run):
                result = await service.evaluate_response(core)
        else:
            result = await service.evaluate_response(core)
        return self.to_wire(result)

    async def batch(self, body: BatchRequest, checked: bool = False) -> BatchResponse:
        """Decide every request, in order and one by one (`checked` as for `one`): a bad
        request (context beyond the limits, unknown policy id) gets its own error entry."""
        if len(body.requests) > self._max_batch:
            raise ApiProblem(
                422, f"a batch holds at most {self._max_batch} requests", code="batch_too_large"
            )
        answers: list[BatchDecision | BatchItemError | None] = []
        requests: list[EvaluationRequest] = []
        for index, item in enumerate(body.requests):
            try:
                requests.append(self.to_core(item, None, checked))
                answers.append(None)
            except ApiProblem as exc:
                answers.append(_item_error(index, item.request_id, exc))
        service = self._rt.services.evaluation
        if self._telemetry.enabled:
            with self._telemetry.span("policy.evaluate_batch", size=len(requests)):
                decided = await service.evaluate_each(requests)
        else:
            decided = await service.evaluate_each(requests)
        results = [r for r in decided if isinstance(r, EvaluationResult)]
        # Metrics once per distinct outcome, not per decision: each increment takes a lock.
        outcomes = Counter(
            (
                r.decision.decision,
                r.decision.matched_policies,
                r.cached,
                tuple(e.policy for e in r.decision.errors),
            )
            for r in results
        )
        for (decision, policies, cached, errors), count in outcomes.items():
            self._metrics.observe_decision(decision, policies, cached, count, errors)
        of = BatchDecision.of
        pending = iter(decided)
        for index, answer in enumerate(answers):
            if answer is not None:
                continue
            outcome = next(pending)
            if isinstance(outcome, EvaluationResult):
                answers[index] = of(outcome.decision, outcome.request_id, outcome.cached)
            else:
                problem = classify(outcome)
                answers[index] = _item_error(index, body.requests[index].request_id, problem)
        return BatchResponse(decisions=[a for a in answers if a is not None])


def _item_error(index: int, request_id: str | None, problem: ApiProblem) -> BatchItemError:
    return BatchItemError(
        index=index,
        request_id=request_id,
        status=problem.status,
        type=PROBLEM_TYPE_PREFIX + problem.code,
        error=problem.detail,
    )
