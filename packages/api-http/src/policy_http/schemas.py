"""The wire shapes of the HTTP API (msgspec Structs), mapped to core types in the routes.

These are what the OpenAPI document describes. Decisions keep the shape of
the policy language (spec 5.7) plus `request_id` and `cached`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

import msgspec
from policy_core.model import Decision, EvaluationError, Obligation, Reservation, RuleTrace
from policy_core.ports import DecisionRecord, PolicyResource

__all__ = [
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyItem",
    "ApiKeyList",
    "BatchDecision",
    "BatchItemError",
    "BatchRequest",
    "BatchResponse",
    "EvaluateRequest",
    "EvaluateResponse",
    "HealthStatus",
    "HistoryItem",
    "HistoryList",
    "PolicyList",
    "PolicyResource",
    "RevisionItem",
    "RevisionList",
    "Rollback",
    "StatsResponse",
    "StatusChange",
    "UsageRecorded",
    "UsageRequest",
    "ValidationResult",
]

Identifier = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", max_length=128)
]
RequestId = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,128}$", min_length=1, max_length=128)
]
# "" means "no namespace filter", as an absent field (and as gRPC's empty string).
Namespace = Annotated[str, msgspec.Meta(max_length=128)]
StatusName = Literal["active", "draft", "deprecated"]
Role = Literal["admin", "policy-admin", "evaluator", "auditor"]


class _Wire(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


# --- evaluation -----------------------------------------------------------------


class EvaluateRequest(_Wire, frozen=True):
    """One evaluation: the context, and optionally which policies, namespace, mode."""

    context: dict[str, Any]
    policies: Annotated[list[Identifier], msgspec.Meta(max_length=1000)] | None = None
    namespace: Namespace | None = None
    dry_run: bool = False
    trace: bool = False
    request_id: RequestId | None = None


class EvaluateResponseRequest(_Wire, frozen=True):
    """A model's response to judge (policy language 7.1): the request's context and the
    response section; `request_id` links the decision to the request's, `reservation`
    (the request decision's `reservation.id`) is settled at `response.cost`."""

    context: dict[str, Any]
    response: dict[str, Any]
    policies: Annotated[list[Identifier], msgspec.Meta(max_length=1000)] | None = None
    namespace: Namespace | None = None
    dry_run: bool = False
    trace: bool = False
    request_id: RequestId | None = None
    reservation: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class EvaluateResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The decision (policy language 5.7), its request id, and whether it came from cache."""

    request_id: str
    cached: bool
    decision: Literal["allow", "deny", "warn", "modify"]
    allowed: bool
    reason: str | None = None
    matched_policies: tuple[str, ...] = ()
    matched_rules: tuple[str, ...] = ()
    matched_exceptions: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    modifications: dict[str, Any] = {}
    obligations: tuple[Obligation, ...] = ()
    metadata: dict[str, Any] = {}
    errors: tuple[EvaluationError, ...] = ()
    shadow: Decision | None = None
    policy_set: str = ""
    evaluation_time_ms: float = 0.0
    trace: tuple[RuleTrace, ...] | None = None
    reservation: Reservation | None = None

    @classmethod
    def of(cls, decision: Decision, request_id: str, cached: bool) -> Self:
        """Map a core decision to the wire shape."""
        d = decision
        return cls(
            request_id=request_id,
            cached=cached,
            decision=d.decision,
            allowed=d.allowed,
            reason=d.reason,
            matched_policies=d.matched_policies,
            matched_rules=d.matched_rules,
            matched_exceptions=d.matched_exceptions,
            warnings=d.warnings,
            modifications=d.modifications,
            obligations=d.obligations,
            metadata=d.metadata,
            errors=d.errors,
            shadow=d.shadow,
            policy_set=d.policy_set,
            evaluation_time_ms=d.evaluation_time_ms,
            trace=d.trace,
            reservation=d.reservation,
        )


class BatchRequest(_Wire, frozen=True):
    """Up to 1,000 evaluations, answered in order."""

    requests: Annotated[list[EvaluateRequest], msgspec.Meta(min_length=1, max_length=1000)]


class BatchDecision(EvaluateResponse, frozen=True, kw_only=True, tag="decision", tag_field="kind"):
    """A decided batch request: an evaluation's answer, with `kind: decision`."""


class BatchItemError(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="error", tag_field="kind"
):
    """The answer to one batch request that could not be decided (an unknown policy id,
    a context beyond the limits), `kind: error`, in that request's place; the others
    are still decided. `type`, `status` and `error` (the message) are what the same
    request alone would get as a problem document.
    """

    index: int
    request_id: str | None = None
    status: int
    type: str
    error: str


class BatchResponse(msgspec.Struct, frozen=True, kw_only=True):
    """One entry per request, in order: `kind` tells a decision from an error entry."""

    decisions: list[BatchDecision | BatchItemError]


# --- policies ---------------------------------------------------------------------


class PolicyList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[PolicyResource]
    next_cursor: str | None


class StatusChange(_Wire, frozen=True):
    status: StatusName


class Rollback(_Wire, frozen=True):
    """Roll back to `revision`: a new revision equal to it is written."""

    revision: Annotated[int, msgspec.Meta(ge=1)]


class RevisionItem(msgspec.Struct, frozen=True, kw_only=True):
    revision: int
    author: str | None
    created_at: datetime
    hash: str
    summary: str


class RevisionList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[RevisionItem]
    next_cursor: str | None


class ValidationIssue(msgspec.Struct, frozen=True, kw_only=True):
    path: str = ""
    line: int | None = None
    column: int | None = None
    message: str


class ValidationResult(msgspec.Struct, frozen=True, kw_only=True):
    """A valid document: the ids it defines and the warnings found (errors give a 422)."""

    valid: bool
    policies: list[str]
    warnings: list[ValidationIssue]


# --- history and stats --------------------------------------------------------------


class HistoryItem(msgspec.Struct, frozen=True, kw_only=True):
    """One audit record; `context` has `redact` obligations applied.

    `obligations`, `errors` and `shadow` (the draft policies' decision, when
    any draft is loaded) are those of the stored decision.
    """

    request_id: str
    policy_set: str
    decision: str
    matched_policies: tuple[str, ...]
    matched_rules: tuple[str, ...]
    reason: str | None
    context_digest: str
    context: dict[str, Any]
    latency_ms: float
    created_at: datetime
    obligations: tuple[Obligation, ...] = ()
    errors: tuple[EvaluationError, ...] = ()
    shadow: Decision | None = None

    @classmethod
    def of(cls, record: DecisionRecord) -> HistoryItem:
        """Map a stored record to the wire shape."""
        return cls(
            request_id=record.request_id,
            policy_set=record.policy_set,
            decision=record.decision,
            matched_policies=record.matched_policies,
            matched_rules=record.matched_rules,
            reason=record.reason,
            context_digest=record.context_digest,
            context=record.context,
            latency_ms=record.latency_ms,
            created_at=record.created_at,
            obligations=record.detail.obligations,
            errors=record.detail.errors,
            shadow=record.detail.shadow,
        )


class HistoryList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[HistoryItem]
    next_cursor: str | None


class StatsResponse(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    by_decision: dict[str, int]
    by_policy: dict[str, int]
    by_rule: dict[str, int]
    latency_ms: dict[str, float]
    since: datetime
    until: datetime


# --- usage and API keys --------------------------------------------------------------


class UsageRequest(_Wire, frozen=True):
    """Spend for `budget.spent`: either added to a `key`, or settling a `reservation`.

    With `reservation` (the `reservation.id` of an allowed decision), the
    reservation is replaced by `usd`, the actual cost, on each of its keys
    (spec 7.3); `key` and `at` are then not given.
    """

    usd: Annotated[float, msgspec.Meta(ge=0, le=1e9)]
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    at: datetime | None = None
    reservation: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    # What CostOps `track` receives besides the cost (LLM_POLICY_COSTOPS_URL), all optional.
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    user_id: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    team_id: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    project_id: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    provider: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    model: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    prompt_tokens: Annotated[int, msgspec.Meta(ge=0, le=10**12)] = 0
    completion_tokens: Annotated[int, msgspec.Meta(ge=0, le=10**12)] = 0


class UsageRecorded(msgspec.Struct, frozen=True, kw_only=True):
    """What was charged: `key` (a plain record), or the `reservation` settled and its `keys`."""

    usd: float
    key: str | None = None
    reservation: str | None = None
    keys: tuple[str, ...] = ()


class ApiKeyCreate(_Wire, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    roles: Annotated[list[Role], msgspec.Meta(min_length=1, max_length=4)]


class ApiKeyItem(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    prefix: str
    roles: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(msgspec.Struct, frozen=True, kw_only=True):
    """The new key; `key` is shown this once and stored only as a hash."""

    id: str
    name: str
    prefix: str
    roles: tuple[str, ...]
    created_at: datetime
    key: str


class ApiKeyList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ApiKeyItem]


class IntegrationStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One integration's state on /ready (never part of readiness)."""

    url: str
    breaker: Literal["closed", "half_open", "open"]
    consecutive_failures: int = 0
    last_error: str | None = None
    stale: bool = False


class HealthStatus(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = {}
    # /ready: each configured integration's state; it never makes the replica unready.
    integrations: dict[str, IntegrationStatus] | msgspec.UnsetType = msgspec.UNSET
