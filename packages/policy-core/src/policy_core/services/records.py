"""Records of the service layer (the port records are re-exported from `policy_core.ports`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from policy_core.model import Decision

__all__ = [
    "EvaluationRequest",
    "EvaluationResult",
    "ResponseEvaluationRequest",
    "Settlement",
    "response_record_id",
]


class EvaluationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One evaluation as the APIs receive it (spec: interfaces.md, evaluate request).

    `policies` (ids) and `namespace` filter the policies as given: empty means
    "not given" (`PolicyEngine.select` normalises the filter, once).
    `request_id` is generated when absent. `dry_run` evaluates without counting
    usage, caching or logging; `trace` asks for the rule trace (never cached).
    """

    context: Mapping[str, Any]
    policies: Sequence[str] | None = None
    namespace: str | None = None
    dry_run: bool = False
    trace: bool = False
    request_id: str | None = None


class ResponseEvaluationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The model's response to a request, to be judged (spec 7.1).

    `context` is the request's context; `request_id` the id of the request's
    decision, which the response decision is linked to (its record's id is
    `<request_id>.response`, see `response_record_id`); `reservation` the id of
    the request's budget reservation (`decision.reservation.id`), settled at
    `response.cost` when the response carries `usage` (spec 7.3).
    """

    context: Mapping[str, Any]
    response: Mapping[str, Any]
    policies: Sequence[str] | None = None
    namespace: str | None = None
    dry_run: bool = False
    trace: bool = False
    request_id: str | None = None
    reservation: str | None = None


class Settlement(msgspec.Struct, frozen=True, kw_only=True):
    """What judging a response did to its reservation (spec 7.3).

    `cost` is `response.cost` (None without usage or prices: nothing to
    settle); `settled` is False for an unknown, already settled or long
    expired reservation, or a store that failed (it then expires).
    """

    reservation: str
    settled: bool
    cost: float | None = None


def response_record_id(request_id: str) -> str:
    """The decision log id of the response decision linked to request `request_id`."""
    return f"{request_id}.response"


class EvaluationResult(msgspec.Struct, frozen=True, kw_only=True):
    """A decision with the request id it answers and whether it came from the cache."""

    decision: Decision
    request_id: str
    cached: bool = False

    def to_builtins(self) -> dict[str, Any]:
        """The API response shape: the decision's fields plus `request_id` and `cached`."""
        out: dict[str, Any] = msgspec.to_builtins(self.decision)
        out["request_id"] = self.request_id
        out["cached"] = self.cached
        return out
