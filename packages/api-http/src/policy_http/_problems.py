"""Every error as `application/problem+json` (RFC 9457), from one mapping table.

Core errors carry a stable `code`; `CODE_STATUS` is the only place that turns
a code into an HTTP status. Anything unexpected becomes a bare 500 whose body
says nothing about the cause (the cause goes to the log, with the request id).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from loguru import logger
from policy_core.errors import (
    ComplianceUnavailable,
    PolicyEngineError,
    PolicyLoadError,
    PolicyNotCompliant,
)

__all__ = [
    "CODE_STATUS",
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_TYPE_PREFIX",
    "ApiProblem",
    "Problem",
    "ProblemIssue",
    "classify",
    "exception_handlers",
    "problem_body",
    "problem_response",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = _TYPE_PREFIX = "urn:llm-policy:problem:"

# Core error code -> HTTP status: the single mapping table of this API.
CODE_STATUS: Mapping[str, int] = {
    "invalid_policy": 422,
    "policy_not_found": 404,
    "policy_exists": 409,
    "revision_conflict": 412,
    "revision_not_found": 404,
    "api_key_not_found": 404,
    "invalid_request": 422,
    "store_unavailable": 503,
    "policy_not_compliant": 422,  # Governance rejects the write (LLM_POLICY_GOVERNANCE_ENFORCE)
    "compliance_unavailable": 503,  # ... or cannot be asked: the write is refused, never passed
    "unauthenticated": 401,  # the gatekeeper answers it first, with its challenge
}
_DEFAULT_CORE_STATUS = 400
# Python's recursion limit bounds how deep msgspec decodes Any-typed fields; a body
# that reaches it nests at least this deep (the stack already holds the server's frames).
MAX_DECODE_DEPTH = 500


class ProblemIssue(msgspec.Struct, frozen=True, kw_only=True):
    """One validation problem: where (document path, 1-based line/column) and what."""

    path: str = ""
    line: int | None = None
    column: int | None = None
    message: str


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem details object."""

    type: str
    title: str
    status: int
    detail: str = ""
    instance: str | None = None
    request_id: str | None = None
    errors: list[ProblemIssue] | None = None


class ApiProblem(Exception):
    """Raised by the API layer itself (auth, preconditions, limits) to answer with a problem."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[ProblemIssue] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or _slug(HTTPStatus(status).phrase)
        self.headers = dict(headers or {})
        self.errors = list(errors) if errors is not None else None


def _slug(text: str) -> str:
    return text.lower().replace(" ", "_").replace("-", "_")


_encoder = msgspec.json.Encoder()


def problem_body(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    instance: str | None = None,
    request_id: str | None = None,
    errors: Sequence[ProblemIssue] | None = None,
) -> bytes:
    """The encoded problem document; `detail` must be safe to show to the caller."""
    phrase = HTTPStatus(status).phrase
    problem = Problem(
        type=_TYPE_PREFIX + (code or _slug(phrase)),
        title=phrase,
        status=status,
        detail=detail,
        instance=instance,
        request_id=request_id,
        errors=list(errors) if errors is not None else None,
    )
    try:
        return _encoder.encode(problem)
    except UnicodeEncodeError:
        # A message quoting the caller's input may hold lone surrogates (valid JSON
        # escapes, not UTF-8): replace them rather than fail the error response.
        return _encoder.encode(_scrub(msgspec.to_builtins(problem)))


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def problem_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    request: Request[Any, Any, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[ProblemIssue] | None = None,
) -> Response[bytes]:
    """A problem+json response for a Litestar handler."""
    body = problem_body(
        status,
        detail,
        code=code,
        instance=request.url.path if request else None,
        request_id=_rid(request) if request else None,
        errors=errors,
    )
    return Response(
        content=body,
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def load_error_issues(error: PolicyLoadError) -> list[ProblemIssue]:
    """The issues of a load error in the `errors` shape of a validation problem."""
    return [
        ProblemIssue(path=i.path, line=i.line, column=i.column, message=i.message)
        for i in error.issues
    ]


def classify(exc: Exception, request_id: str | None = None, path: str = "") -> ApiProblem:
    """Any exception as the problem to answer with (the one mapping, for every route)."""
    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, PolicyEngineError):
        return _core_problem(exc, request_id)
    if isinstance(exc, UnicodeDecodeError):
        # Raised by msgspec for a JSON string that is not UTF-8, on any route.
        return ApiProblem(
            400,
            f"the body is not valid UTF-8 (byte {exc.start}); JSON text must be UTF-8",
            code="malformed_request",
        )
    if isinstance(exc, RecursionError):
        # Decoding a body nested hundreds of levels deep (msgspec stops cleanly).
        logger.bind(request_id=request_id, path=path).warning("body nested too deeply")
        return ApiProblem(
            400,
            f"the body nests deeper than {MAX_DECODE_DEPTH} levels; "
            "an evaluation context may nest at most LLM_POLICY_MAX_CONTEXT_DEPTH levels",
            code="nested_too_deeply",
        )
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        if isinstance(exc, ValidationException):
            return ApiProblem(
                400,
                "the request is malformed",
                code="malformed_request",
                headers=exc.headers,
                errors=_validation_issues(exc.extra),
            )
        detail = exc.detail if isinstance(exc.detail, str) else ""
        return ApiProblem(exc.status_code, detail, headers=exc.headers)
    logger.bind(request_id=request_id, path=path).opt(exception=exc).error("unhandled error")
    return ApiProblem(500, "an internal error occurred; quote the request id when reporting it")


def _core_problem(exc: PolicyEngineError, request_id: str | None) -> ApiProblem:
    status = CODE_STATUS.get(exc.code, _DEFAULT_CORE_STATUS)
    if isinstance(exc, ComplianceUnavailable):
        logger.bind(request_id=request_id, code=exc.code).warning("compliance check unavailable")
        return ApiProblem(
            status,
            f"the {exc.action} of policy {exc.policy_id!r} is refused: Governance's compliance "
            "check could not be made; retry shortly",
            code=exc.code,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, PolicyNotCompliant):
        issues = [
            ProblemIssue(
                path=str(v.get("rule", "")),
                message=f"{v.get('severity')}: {v.get('description')}"
                + (f" ({v['regulation']})" if v.get("regulation") else ""),
            )
            for v in exc.violations
        ]
        return ApiProblem(status, str(exc), code=exc.code, errors=issues)
    if status >= 500:
        # The core's message may name a backend; the caller only learns that it is down.
        logger.bind(request_id=request_id, code=exc.code).warning("backend unavailable")
        return ApiProblem(
            status,
            "a backing store is unavailable; retry shortly",
            code=exc.code,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, PolicyLoadError):
        return ApiProblem(
            status, "the policy document is invalid", code=exc.code, errors=load_error_issues(exc)
        )
    return ApiProblem(status, str(exc), code=exc.code)


def _validation_issues(extra: Any) -> list[ProblemIssue]:
    if not isinstance(extra, list):
        return []
    return [
        ProblemIssue(path=str(item.get("key") or ""), message=str(item.get("message", "")))
        for item in extra
        if isinstance(item, Mapping)
    ]


def _rid(request: Request[Any, Any, Any]) -> str | None:
    rid = request.scope.get("state", {}).get("request_id")
    return rid if isinstance(rid, str) else None


def _handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    problem = classify(exc, _rid(request), request.url.path)
    headers = dict(problem.headers)
    if _rid(request) is None:
        # Unmatched routes (404/405) never reach the request-id middleware.
        state = request.scope.setdefault("state", {})
        state["request_id"] = headers["X-Request-ID"] = os.urandom(16).hex()
    return problem_response(
        problem.status,
        problem.detail,
        code=problem.code,
        request=request,
        headers=headers,
        errors=problem.errors,
    )


exception_handlers: ExceptionHandlersMap = {Exception: _handle}
