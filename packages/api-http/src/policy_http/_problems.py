"""Every error as `application/problem+json` (RFC 9457), from one mapping table.

Core errors carry a stable `code`; `CODE_STATUS` is the only place that turns
a code into an HTTP status. Anything unexpected becomes a bare 500 whose body
says nothing about the cause (the cause goes to the log, with the request id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from loguru import logger
from policy_core.errors import PolicyEngineError, PolicyLoadError

__all__ = [
    "CODE_STATUS",
    "PROBLEM_MEDIA_TYPE",
    "ApiProblem",
    "Problem",
    "ProblemIssue",
    "exception_handlers",
    "problem_response",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:llm-policy:problem:"

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
}
_DEFAULT_CORE_STATUS = 400


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


def problem_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    request: Request[Any, Any, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[ProblemIssue] | None = None,
) -> Response[bytes]:
    """A problem+json response; `detail` must be safe to show to the caller."""
    phrase = HTTPStatus(status).phrase
    request_id = request.scope.get("state", {}).get("request_id") if request else None
    body = Problem(
        type=_TYPE_PREFIX + (code or _slug(phrase)),
        title=phrase,
        status=status,
        detail=detail,
        instance=request.url.path if request else None,
        request_id=request_id,
        errors=list(errors) if errors is not None else None,
    )
    return Response(
        content=_encoder.encode(body),
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


def _on_api_problem(request: Request[Any, Any, Any], exc: ApiProblem) -> Response[bytes]:
    return problem_response(
        exc.status,
        exc.detail,
        code=exc.code,
        request=request,
        headers=exc.headers,
        errors=exc.errors,
    )


def _on_core_error(request: Request[Any, Any, Any], exc: PolicyEngineError) -> Response[bytes]:
    status = CODE_STATUS.get(exc.code, _DEFAULT_CORE_STATUS)
    if status >= 500:
        # The core's message may name a backend; the caller only learns that it is down.
        logger.bind(request_id=_rid(request), code=exc.code).warning("backend unavailable")
        return problem_response(
            status,
            "a backing store is unavailable; retry shortly",
            code=exc.code,
            request=request,
            headers={"Retry-After": "1"},
        )
    errors = load_error_issues(exc) if isinstance(exc, PolicyLoadError) else None
    detail = "the policy document is invalid" if errors is not None else str(exc)
    return problem_response(status, detail, code=exc.code, request=request, errors=errors)


def _on_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status >= 500:
        return _on_unexpected(request, exc)
    errors: list[ProblemIssue] | None = None
    detail = exc.detail if isinstance(exc.detail, str) else ""
    if isinstance(exc, ValidationException):
        errors = _validation_issues(exc.extra)
        detail = "the request is malformed"
    headers = dict(exc.headers or {})
    return problem_response(status, detail, request=request, headers=headers, errors=errors)


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


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    logger.bind(request_id=_rid(request), path=request.url.path).opt(exception=exc).error(
        "unhandled error"
    )
    return problem_response(
        500, "an internal error occurred; quote the request id when reporting it", request=request
    )


exception_handlers: ExceptionHandlersMap = {
    ApiProblem: _on_api_problem,
    PolicyEngineError: _on_core_error,
    HTTPException: _on_http_exception,
    Exception: _on_unexpected,
}
