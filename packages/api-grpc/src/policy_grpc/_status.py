"""The one table from errors to gRPC status codes.

Core errors carry a stable `code` (policy_core.errors); their messages name
the thing and say how to fix it, so they are safe to return. Anything else
is an internal error: logged here, answered with a bare INTERNAL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from policy_core.errors import ComplianceUnavailable, PolicyEngineError

__all__ = [
    "STATUS_BY_CODE",
    "InvalidRequestError",
    "LimitExceededError",
    "PermissionDeniedError",
    "grpc_error",
    "status_of",
]

_log = logging.getLogger("policy_grpc")

#: `PolicyEngineError.code` -> status. A code missing here is INTERNAL.
STATUS_BY_CODE: Mapping[str, Status] = {
    "invalid_policy": Status.INVALID_ARGUMENT,
    "invalid_request": Status.INVALID_ARGUMENT,
    "policy_not_found": Status.NOT_FOUND,
    "revision_not_found": Status.NOT_FOUND,
    "policy_exists": Status.ALREADY_EXISTS,
    "revision_conflict": Status.FAILED_PRECONDITION,
    "store_unavailable": Status.UNAVAILABLE,
    "policy_not_compliant": Status.FAILED_PRECONDITION,
    "compliance_unavailable": Status.UNAVAILABLE,
    "rate_limited": Status.RESOURCE_EXHAUSTED,
    "unauthenticated": Status.UNAUTHENTICATED,
}


class InvalidRequestError(Exception):
    """The request is malformed (INVALID_ARGUMENT); the message says what to fix."""


class PermissionDeniedError(Exception):
    """The principal lacks a permission (PERMISSION_DENIED)."""


class LimitExceededError(Exception):
    """A message or a context exceeds a configured limit (RESOURCE_EXHAUSTED)."""


_STATUS_BY_TYPE: tuple[tuple[type[BaseException], Status], ...] = (
    (PermissionDeniedError, Status.PERMISSION_DENIED),
    (InvalidRequestError, Status.INVALID_ARGUMENT),
    (LimitExceededError, Status.RESOURCE_EXHAUSTED),
)


def status_of(exc: BaseException) -> Status:
    """The status code an exception maps to."""
    if isinstance(exc, PolicyEngineError):
        return STATUS_BY_CODE.get(exc.code, Status.INTERNAL)
    for kind, status in _STATUS_BY_TYPE:
        if isinstance(exc, kind):
            return status
    return Status.INTERNAL


def grpc_error(exc: BaseException) -> GRPCError:
    """The GRPCError to answer `exc` with (message without internals)."""
    status = status_of(exc)
    if status is Status.INTERNAL:
        # One line, no stack trace (docs/grpc.md): the type and message say what broke.
        _log.error(
            "internal error while serving a gRPC call: %s: %s",
            type(exc).__name__,
            exc,
            extra={"error_type": type(exc).__name__},
        )
        return GRPCError(Status.INTERNAL, "internal error")
    if isinstance(exc, ComplianceUnavailable):
        return GRPCError(status, str(exc))
    if status is Status.UNAVAILABLE:
        return GRPCError(status, "a backing store is unavailable; retry later")
    # Core messages are ours and safe; a PolicyLoadError lists every issue as
    # one `file:line:column: message` line.
    return GRPCError(status, str(exc))
