"""Mapping between the generated admin messages and core types (the edge).

Generated betterproto2 types are built and read only here and in
`_service`; nothing outside `policy_grpc` sees them.
"""

from __future__ import annotations

from collections.abc import Iterable

from policy_core.errors import Issue, PolicyLoadError
from policy_core.ports import PolicyRecord, PolicyResource

from policy_grpc._generated.google.protobuf import Struct
from policy_grpc._generated.llm_policy.v1 import Policy, ValidatePolicyResponse, ValidationIssue
from policy_grpc._status import InvalidRequestError

__all__ = [
    "MAX_PAGE_SIZE",
    "etag",
    "optional_text",
    "page_size",
    "policy_message",
    "validation_failed",
    "validation_passed",
]

MAX_PAGE_SIZE = 1000
_DEFAULT_PAGE_SIZE = 50
_STATUSES = ("active", "draft", "deprecated")


def etag(record: PolicyRecord) -> str:
    """The opaque strong tag of one revision (the HTTP API's ETag value)."""
    return f"{record.id}:{record.revision}"


# The fields of the shared policy resource that the `Policy` message carries as they are.
_MESSAGE_FIELDS = ("id", "namespace", "revision", "status", "created_at", "updated_at")


def policy_message(record: PolicyRecord) -> Policy:
    """A stored revision as a `Policy` message: the shared resource, plus its etag."""
    shared = PolicyResource.of(record).json()
    return Policy(
        **{name: shared[name] for name in _MESSAGE_FIELDS},
        document=Struct.from_dict(shared["document"]),
        etag=etag(record),
    )


def _issue(issue: Issue) -> ValidationIssue:
    return ValidationIssue(
        file=issue.file,
        line=issue.line,
        column=issue.column,
        message=issue.message,
        severity=issue.severity,
        path=issue.path,
    )


def validation_passed(
    policy_ids: Iterable[str], warnings: Iterable[Issue]
) -> ValidatePolicyResponse:
    """A document that loads (possibly with warnings)."""
    return ValidatePolicyResponse(
        valid=True,
        warnings=[_issue(w) for w in warnings],
        policy_ids=list(policy_ids),
    )


def validation_failed(error: PolicyLoadError) -> ValidatePolicyResponse:
    """A document that does not load: every error (and warning) with its position."""
    return ValidatePolicyResponse(
        valid=False,
        errors=[_issue(i) for i in error.issues if i.severity != "warning"],
        warnings=[_issue(i) for i in error.issues if i.severity == "warning"],
    )


def optional_text(value: str, name: str, allowed: tuple[str, ...] | None = None) -> str | None:
    """An optional string filter: empty means absent; checked against `allowed`."""
    if not value:
        return None
    if allowed is not None and value not in allowed:
        raise InvalidRequestError(
            f"`{name}` must be one of {', '.join(allowed)}, not {value[:64]!r}"
        )
    return value


def status_filter(value: str) -> str | None:
    return optional_text(value, "status", _STATUSES)


def page_size(value: int) -> int:
    """`page_size`: 0 means the default; at most MAX_PAGE_SIZE."""
    if value < 0 or value > MAX_PAGE_SIZE:
        raise InvalidRequestError(
            f"`page_size` must be between 1 and {MAX_PAGE_SIZE} (0: the default)"
        )
    return value or _DEFAULT_PAGE_SIZE
