"""Records of the service layer (the port records are re-exported from `policy_core.ports`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from policy_core.model import Decision

__all__ = ["EvaluationRequest", "EvaluationResult"]


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
