"""The one error -> status table covers every core error and hides internals."""

from __future__ import annotations

import logging

import pytest
from grpclib.const import Status
from policy_core import errors
from policy_core.errors import AuthError
from policy_grpc._status import (
    STATUS_BY_CODE,
    InvalidRequestError,
    LimitExceededError,
    PermissionDeniedError,
    grpc_error,
    status_of,
)


def test_every_core_error_code_has_a_status() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    codes = {
        cls.code
        for cls in classes
        if isinstance(cls, type) and issubclass(cls, errors.PolicyEngineError)
    }
    assert codes - {"error"} <= set(STATUS_BY_CODE)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.PolicyNotFound("p"), Status.NOT_FOUND),
        (errors.RevisionNotFound("p", 3), Status.NOT_FOUND),
        (errors.PolicyAlreadyExists("p"), Status.ALREADY_EXISTS),
        (errors.RevisionConflict("p", 1, 2), Status.FAILED_PRECONDITION),
        (errors.PolicyLoadError([]), Status.INVALID_ARGUMENT),
        (errors.StoreUnavailable("db down at 10.0.0.3"), Status.UNAVAILABLE),
        (AuthError("no"), Status.UNAUTHENTICATED),
        (PermissionDeniedError("no"), Status.PERMISSION_DENIED),
        (InvalidRequestError("bad"), Status.INVALID_ARGUMENT),
        (LimitExceededError("big"), Status.RESOURCE_EXHAUSTED),
        (KeyError("secret internals"), Status.INTERNAL),
    ],
)
def test_statuses(exc: Exception, status: Status) -> None:
    assert status_of(exc) is status
    assert grpc_error(exc).status is status


def test_messages_never_carry_internals(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="policy_grpc"):
        internal = grpc_error(KeyError("password=hunter2"))
    assert internal.message == "internal error"
    assert "hunter2" in caplog.text  # logged on the server, not sent to the client
    unavailable = grpc_error(errors.StoreUnavailable("db down at 10.0.0.3"))
    assert "10.0.0.3" not in (unavailable.message or "")
