"""The error vocabulary of the core, with stable codes that each API maps to a status."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

__all__ = [
    "AuthError",
    "ComplianceUnavailable",
    "EvalError",
    "IntegrationError",
    "Issue",
    "PolicyAlreadyExists",
    "PolicyEngineError",
    "PolicyLoadError",
    "PolicyNotCompliant",
    "PolicyNotFound",
    "RevisionConflict",
    "RevisionNotFound",
    "StoreUnavailable",
]


class Issue(msgspec.Struct, frozen=True, kw_only=True, order=False):
    """One problem (or warning) found while loading policies; positions are 1-based."""

    file: str
    line: int
    column: int
    message: str
    severity: str = "error"  # error | warning
    path: str = ""  # the document path, e.g. "rules[2].condition"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.column, self.message)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class EvalError(Exception):
    """An evaluation error inside a rule (spec 5.4): a value, never a crash."""


class IntegrationError(Exception):
    """An integration call failed: which integration, why, and the outcome for metrics.

    `outcome` is one of `error` (an error status or a refused connection),
    `timeout`, `breaker_open`, `invalid` (a body that does not fit the contract).
    `str()` reads `<integration> <reason>`, e.g. `shield timed out after 200 ms`.
    """

    def __init__(self, integration: str, reason: str, outcome: str = "error") -> None:
        self.integration, self.reason, self.outcome = integration, reason, outcome
        super().__init__(f"{integration} {reason}")


class PolicyEngineError(Exception):
    """Base of every error the core raises on purpose."""

    code = "error"


class PolicyLoadError(PolicyEngineError):
    """Every problem found in one load, sorted by file, line and column."""

    code = "invalid_policy"

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: list[Issue] = sorted(issues, key=Issue.sort_key)
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid policy")


class PolicyNotFound(PolicyEngineError):
    code = "policy_not_found"

    def __init__(self, policy_id: str) -> None:
        self.policy_id = policy_id
        super().__init__(f"policy {policy_id!r} does not exist; list the policies to see their ids")


class PolicyAlreadyExists(PolicyEngineError):
    code = "policy_exists"

    def __init__(self, policy_id: str) -> None:
        self.policy_id = policy_id
        super().__init__(
            f"policy {policy_id!r} already exists; update it with its current revision instead"
        )


class RevisionConflict(PolicyEngineError):
    code = "revision_conflict"

    def __init__(self, policy_id: str, expected: int, actual: int) -> None:
        self.policy_id, self.expected, self.actual = policy_id, expected, actual
        super().__init__(
            f"policy {policy_id!r} is at revision {actual}, not {expected}; "
            "read it again and reapply your change"
        )


class RevisionNotFound(PolicyEngineError):
    code = "revision_not_found"

    def __init__(self, policy_id: str, revision: int) -> None:
        self.policy_id, self.revision = policy_id, revision
        super().__init__(f"policy {policy_id!r} has no revision {revision}")


class StoreUnavailable(PolicyEngineError):
    """A backing store could not be reached; adapters translate driver errors to this."""

    code = "store_unavailable"


class PolicyNotCompliant(PolicyEngineError):
    """Governance found the policy write non-compliant (HTTP 422, gRPC FAILED_PRECONDITION, exit 3).

    `violations` are Governance's, as JSON objects `{rule, severity, description, regulation}`.
    """

    code = "policy_not_compliant"

    def __init__(
        self, policy_id: str, action: str, violations: Iterable[dict[str, object]]
    ) -> None:
        self.policy_id, self.action = policy_id, action
        self.violations: list[dict[str, object]] = list(violations)
        listed = "; ".join(
            f"{v.get('rule')} ({v.get('severity')}): {v.get('description')}"
            for v in self.violations
        )
        super().__init__(
            f"governance rejects the {action} of policy {policy_id!r}: {listed or 'non-compliant'}"
        )


class ComplianceUnavailable(PolicyEngineError):
    """Governance could not answer a compliance check while it is enforced (HTTP 503, UNAVAILABLE).

    The write is refused: an enforced check never passes silently.
    """

    code = "compliance_unavailable"

    def __init__(self, policy_id: str, action: str, reason: str) -> None:
        self.policy_id, self.action, self.reason = policy_id, action, reason
        super().__init__(
            f"the {action} of policy {policy_id!r} is refused: the governance compliance check "
            f"could not be made ({reason}); retry when Governance answers"
        )


class AuthError(PolicyEngineError):
    """Credentials missing or refused (401 / UNAUTHENTICATED).

    The message says what is wrong and is safe to show: it never echoes the
    credential nor a claim's value.
    """

    code = "unauthenticated"
