"""Domain types of the policy language (spec: shared/design/policy-language.md).

Every type is a frozen msgspec Struct; the same types serialise to JSON/YAML.
Documents keep the *source* form of conditions (expression text or condition
tree) next to the parsed IR, so that a stored policy round-trips exactly as
it was written.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

import msgspec

from policy_core.ir import Expr

__all__ = [
    "Action",
    "AuditObligation",
    "Decision",
    "DecisionKind",
    "EvaluationError",
    "FactFailure",
    "FactRequest",
    "LogObligation",
    "Obligation",
    "Policy",
    "PolicyConfig",
    "PolicyException",
    "PolicyMetadata",
    "PolicyStatus",
    "RedactObligation",
    "RequireApprovalObligation",
    "Reservation",
    "Rule",
    "RuleTrace",
    "SuggestAlternativeObligation",
    "ThrottleObligation",
]


class PolicyStatus(StrEnum):
    ACTIVE = "active"
    DRAFT = "draft"
    DEPRECATED = "deprecated"


class DecisionKind(StrEnum):
    """Outcome of an evaluation; ordered by strength: deny > modify > warn > allow."""

    ALLOW = "allow"
    WARN = "warn"
    MODIFY = "modify"
    DENY = "deny"


#: A stateful or integration fact a policy needs, as `Selection.fact_requests` lists it:
#: ("rate_limit.count", key, window) | ("budget.spent", key, period) |
#: ("shield.scan", text) | ("costops.budget", estimated_cost) | ("governance.approved_models",)
FactRequest: TypeAlias = tuple[Any, ...]


class FactFailure:
    """The value of a fact that could not be gathered, in the facts mapping.

    A rule reading it has an evaluation error (spec 4.5, 5.4) whose message
    names the fact, the integration and the reason.
    """

    __slots__ = ("integration", "reason")

    def __init__(self, integration: str, reason: str) -> None:
        self.integration, self.reason = integration, reason

    def __repr__(self) -> str:
        return f"FactFailure({self.integration!r}, {self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FactFailure) and (other.integration, other.reason) == (
            self.integration,
            self.reason,
        )

    def __hash__(self) -> int:
        return hash((self.integration, self.reason))


DECISION_STRENGTH: dict[str, int] = {"allow": 0, "warn": 1, "modify": 2, "deny": 3}

AuditMode: TypeAlias = Literal["all", "decisions_other_than_allow", "none"]
Phase: TypeAlias = Literal["request", "response"]


class _Frozen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    pass


# --- obligations (spec 5.5) -------------------------------------------------


class _ObligationBase(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    # Filled in by the compiler with "<policy>/<rule>" when the obligation is emitted.
    rule: str | None = None


class RedactObligation(_ObligationBase, tag="redact", frozen=True, kw_only=True):
    fields: tuple[str, ...] = ("llm.prompt",)
    pattern: str = "pii"


class AuditObligation(_ObligationBase, tag="audit", frozen=True, kw_only=True):
    severity: Literal["info", "low", "medium", "high", "critical"] = "info"
    alert: bool = False


class LogObligation(_ObligationBase, tag="log", frozen=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"


class ThrottleObligation(_ObligationBase, tag="throttle", frozen=True, kw_only=True):
    delay_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    max_retries: Annotated[int, msgspec.Meta(ge=0)] = 0


class SuggestAlternativeObligation(
    _ObligationBase, tag="suggest_alternative", frozen=True, kw_only=True
):
    models: tuple[str, ...] | None = None
    model: str | None = None
    message: str | None = None


class RequireApprovalObligation(_ObligationBase, tag="require_approval", frozen=True, kw_only=True):
    approvers: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)]
    timeout: str | int | None = None


Obligation: TypeAlias = (
    RedactObligation
    | AuditObligation
    | LogObligation
    | ThrottleObligation
    | SuggestAlternativeObligation
    | RequireApprovalObligation
)

# --- documents (spec 1) -----------------------------------------------------


class Action(_Frozen, frozen=True, kw_only=True):
    decision: Literal["allow", "deny", "warn", "modify"]
    reason: str | None = None
    modifications: dict[str, Any] = {}
    metadata: dict[str, Any] = {}


class Rule(_Frozen, frozen=True, kw_only=True):
    id: str
    name: str
    description: str | None = None
    priority: int = 0
    enabled: bool = True
    # Source form (expression text or condition tree) and its parsed IR.
    condition: str | dict[str, Any] | None = None
    condition_ir: Expr | None = None
    action: Action
    obligations: tuple[Obligation, ...] = ()
    # Spec 7.1: which evaluation runs the rule (the request, or the model's response).
    phase: Phase = "request"


class PolicyException(_Frozen, frozen=True, kw_only=True):
    id: str
    name: str
    description: str | None = None
    enabled: bool = True
    condition: str | dict[str, Any] | None = None
    condition_ir: Expr | None = None
    reason: str | None = None
    phase: Phase = "request"


class PolicyMetadata(_Frozen, frozen=True, kw_only=True):
    id: str
    name: str
    namespace: str = "default"
    version: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    priority: int = 0
    owner: str | None = None


class PolicyConfig(_Frozen, frozen=True, kw_only=True):
    default_decision: Literal["none", "allow", "deny"] = "none"
    fail_open: bool = False
    cache_ttl_seconds: int = 300
    audit: AuditMode = "all"
    # Spec 7.2: characters a stream judge may hold back when a pattern has no bounded length.
    stream_window: int | None = None


class Policy(_Frozen, frozen=True, kw_only=True):
    """One loaded policy document.

    `source` is the document as written (a JSON-compatible mapping, without
    the parsed IR); `digest` is the sha256 of its canonical JSON and identifies
    the revision in `Decision.policy_set`.
    """

    version: str = "1"
    status: PolicyStatus = PolicyStatus.ACTIVE
    metadata: PolicyMetadata
    config: PolicyConfig = PolicyConfig()
    scope: str | dict[str, Any] | None = None
    scope_ir: Expr | None = None
    rules: tuple[Rule, ...] = ()
    exceptions: tuple[PolicyException, ...] = ()
    source: dict[str, Any] = {}
    digest: str = ""
    file: str | None = None

    @property
    def id(self) -> str:
        return self.metadata.id

    @property
    def namespace(self) -> str:
        return self.metadata.namespace


# --- decisions (spec 5.7) ---------------------------------------------------


class EvaluationError(_Frozen, frozen=True, kw_only=True):
    policy: str
    rule: str
    message: str


class RuleTrace(_Frozen, frozen=True, kw_only=True):
    """One evaluated rule (or scope/exception) in a trace."""

    policy: str
    rule: str
    kind: Literal["scope", "exception", "rule", "default"] = "rule"
    result: Literal["matched", "not_matched", "error", "skipped"]
    failed: str | None = None  # first failing sub-expression, in expression form
    error: str | None = None


class Reservation(_Frozen, frozen=True, kw_only=True):
    """Spend held for an allowed request until it is settled or expires (spec 7.3).

    `amount` (USD, the request's `llm.estimated_cost`) counts in
    `budget.spent(key, period)` of each of `keys` until the reservation is
    settled (replaced by the actual cost) or `expires_at` passes.
    """

    id: str
    amount: float
    keys: tuple[str, ...]
    expires_at: datetime


class Decision(msgspec.Struct, frozen=True, kw_only=True):
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
