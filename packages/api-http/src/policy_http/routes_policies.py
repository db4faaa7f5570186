"""Policy routes: create, read (JSON or YAML), update with If-Match, status, delete,
revisions, rollback, validate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, Response, delete, get, patch, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from policy_core.errors import PolicyLoadError
from policy_core.ports import PolicyRecord

from policy_http._guard import principal_of
from policy_http._http import (
    etag,
    expected_revisions,
    header,
    is_syntax_error,
    policy_text,
    problems,
    wants_yaml,
    yaml_text,
)
from policy_http._problems import ApiProblem, load_error_issues
from policy_http._runtime import Runtime
from policy_http.schemas import (
    PolicyList,
    PolicyResource,
    RevisionItem,
    RevisionList,
    Rollback,
    StatusChange,
    StatusName,
    ValidationIssue,
    ValidationResult,
)

__all__ = ["policy_routes"]

_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKey": []}]
Limit = Annotated[int, QueryParameter(ge=1, le=1000, description="Page size (default 50).")]
Cursor = Annotated[
    str | None,
    QueryParameter(max_length=512, description="`next_cursor` of the previous page, unchanged."),
]
IfMatch = Annotated[
    str | None,
    HeaderParameter(name="If-Match", description='ETag of the current revision ("id:N").'),
]


@dataclass
class _PolicyBody(Operation):
    """Policy documents travel as JSON or YAML text, chosen by Content-Type."""

    def __post_init__(self) -> None:
        document = Schema(type=OpenAPIType.OBJECT, description="A policy document.")
        text = Schema(type=OpenAPIType.STRING, description="A policy document as YAML.")
        self.request_body = RequestBody(
            required=True,
            content={
                "application/json": OpenAPIMediaType(schema=document),
                "application/yaml": OpenAPIMediaType(schema=text),
                "application/x-yaml": OpenAPIMediaType(schema=text),
                "text/yaml": OpenAPIMediaType(schema=text),
            },
        )


def _with_tag(record: PolicyRecord, status: int = 200, **extra: str) -> Response[PolicyResource]:
    return Response(
        PolicyResource.of(record), status_code=status, headers={"ETag": etag(record), **extra}
    )


async def _read_policy_text(request: Request[Any, Any, Any]) -> str:
    body = await request.body()
    return policy_text(body, header(request.scope, b"content-type"))


def _load_problem(error: PolicyLoadError | UnicodeError) -> ApiProblem:
    if isinstance(error, UnicodeError):
        # YAML escapes such as "\\ud83d" decode to lone surrogates, which no UTF-8
        # response (or store) can hold.
        return ApiProblem(
            400,
            "the document holds an escape that is not valid Unicode (a lone surrogate)",
            code="malformed_body",
        )
    if is_syntax_error(error):
        return ApiProblem(
            400,
            "the body is not valid YAML/JSON",
            code="malformed_body",
            errors=load_error_issues(error),
        )
    return ApiProblem(
        422, "the policy document is invalid", code=error.code, errors=load_error_issues(error)
    )


async def _expected(rt: Runtime, policy_id: str, if_match: str | None) -> int | None:
    """The revision If-Match names (None: no precondition); 412 when it cannot match."""
    if if_match is None:
        return None
    accepted = expected_revisions(if_match, policy_id)
    if accepted is not None and len(accepted) == 1:
        return next(iter(accepted))
    current = await rt.services.policies.get(policy_id)
    if accepted is None or current.revision in accepted:
        return current.revision
    raise ApiProblem(412, f"If-Match does not name the current revision of {policy_id!r}")


def policy_routes(rt: Runtime) -> list[HTTPRouteHandler]:
    """The /policies routes over this app's runtime."""
    write = {"permission": "policies:write", "rate_class": "admin"}
    read = {"permission": "policies:read", "rate_class": "read"}

    @post(
        "/policies",
        opt=write,
        status_code=201,
        operation_class=_PolicyBody,
        responses=problems(409, 413, 415, 422),
        security=_SECURITY,
        summary="Create a policy",
        response_headers=None,
    )
    async def create_policy(request: Request[Any, Any, Any]) -> Response[PolicyResource]:
        text = await _read_policy_text(request)
        try:
            record = await rt.services.policies.create(text, author=principal_of(request).id)
        except (PolicyLoadError, UnicodeError) as exc:
            raise _load_problem(exc) from None
        return _with_tag(record, 201, Location=f"/api/v1/policies/{record.id}")

    @get(
        "/policies",
        opt=read,
        responses=problems(),
        security=_SECURITY,
        summary="List policies",
    )
    async def list_policies(
        namespace: Annotated[str | None, QueryParameter(max_length=128)] = None,
        status: FromQuery[StatusName | None] = None,
        tag: Annotated[str | None, QueryParameter(max_length=128)] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> PolicyList:
        try:
            page = await rt.services.policies.list(
                namespace=namespace, status=status, tag=tag, limit=limit, cursor=cursor
            )
        except (ValueError, TypeError, IndexError, KeyError):
            raise ApiProblem(400, "invalid cursor; pass back a next_cursor unchanged") from None
        return PolicyList(
            items=[PolicyResource.of(r) for r in page.items], next_cursor=page.next_cursor
        )

    @get(
        "/policies/{policy_id:str}",
        opt=read,
        responses=problems(404),
        security=_SECURITY,
        summary="Get a policy (current or ?revision=N; Accept: application/yaml for YAML)",
    )
    async def get_policy(
        request: Request[Any, Any, Any],
        policy_id: FromPath[str],
        revision: Annotated[int | None, QueryParameter(ge=1, le=2**31)] = None,
    ) -> Response[Any]:
        record = await rt.services.policies.get(policy_id, revision)
        if wants_yaml(header(request.scope, b"accept")):
            return Response(
                yaml_text(record),
                media_type="application/yaml",
                headers={"ETag": etag(record)},
            )
        return _with_tag(record)

    @put(
        "/policies/{policy_id:str}",
        opt=write,
        operation_class=_PolicyBody,
        responses=problems(404, 412, 413, 415, 422, 428),
        security=_SECURITY,
        summary="Replace a policy (new revision); requires If-Match",
    )
    async def update_policy(
        request: Request[Any, Any, Any], policy_id: FromPath[str], if_match: IfMatch = None
    ) -> Response[PolicyResource]:
        if if_match is None:
            raise ApiProblem(428, "send If-Match with the ETag of the revision you are replacing")
        expected = await _expected(rt, policy_id, if_match)
        text = await _read_policy_text(request)
        assert expected is not None
        try:
            record = await rt.services.policies.update(
                policy_id, text, expected_revision=expected, author=principal_of(request).id
            )
        except (PolicyLoadError, UnicodeError) as exc:
            raise _load_problem(exc) from None
        return _with_tag(record)

    @patch(
        "/policies/{policy_id:str}/status",
        opt=write,
        responses=problems(404, 412, 422),
        security=_SECURITY,
        summary="Change a policy's status",
    )
    async def set_status(
        request: Request[Any, Any, Any],
        policy_id: FromPath[str],
        data: JSONBody[StatusChange],
        if_match: IfMatch = None,
    ) -> Response[PolicyResource]:
        expected = await _expected(rt, policy_id, if_match)
        try:
            record = await rt.services.policies.set_status(
                policy_id,
                data.status,
                expected_revision=expected,
                author=principal_of(request).id,
            )
        except (PolicyLoadError, UnicodeError) as exc:
            raise _load_problem(exc) from None
        return _with_tag(record)

    @delete(
        "/policies/{policy_id:str}",
        opt={"permission": "policies:delete", "rate_class": "admin"},
        responses=problems(404, 412),
        security=_SECURITY,
        summary="Delete a policy (soft: revisions are kept)",
    )
    async def delete_policy(
        request: Request[Any, Any, Any], policy_id: FromPath[str], if_match: IfMatch = None
    ) -> None:
        expected = await _expected(rt, policy_id, if_match)
        await rt.services.policies.delete(
            policy_id, author=principal_of(request).id, expected_revision=expected
        )

    @get(
        "/policies/{policy_id:str}/revisions",
        opt=read,
        responses=problems(404),
        security=_SECURITY,
        summary="Revision history (who, when, what changed)",
    )
    async def list_revisions(
        policy_id: FromPath[str], limit: Limit = 50, cursor: Cursor = None
    ) -> RevisionList:
        try:
            page = await rt.services.policies.revisions(policy_id, limit=limit, cursor=cursor)
        except (ValueError, TypeError, IndexError, KeyError):
            raise ApiProblem(400, "invalid cursor; pass back a next_cursor unchanged") from None
        items = [
            RevisionItem(
                revision=r.revision,
                author=r.author,
                created_at=r.created_at,
                hash=r.hash,
                summary=r.summary,
            )
            for r in page.items
        ]
        return RevisionList(items=items, next_cursor=page.next_cursor)

    @post(
        "/policies/{policy_id:str}/rollback",
        opt=write,
        status_code=200,
        responses=problems(404, 412, 422),
        security=_SECURITY,
        summary="Write a new revision equal to revision N",
    )
    async def rollback(
        request: Request[Any, Any, Any],
        policy_id: FromPath[str],
        data: JSONBody[Rollback],
        if_match: IfMatch = None,
    ) -> Response[PolicyResource]:
        expected = await _expected(rt, policy_id, if_match)
        try:
            record = await rt.services.policies.rollback(
                policy_id,
                data.revision,
                expected_revision=expected,
                author=principal_of(request).id,
            )
        except (PolicyLoadError, UnicodeError) as exc:
            raise _load_problem(exc) from None
        return _with_tag(record)

    @post(
        "/policies/validate",
        opt={"permission": "policies:read", "rate_class": "read"},
        status_code=200,
        operation_class=_PolicyBody,
        responses=problems(413, 415, 422),
        security=_SECURITY,
        summary="Validate policies without storing them",
    )
    async def validate(request: Request[Any, Any, Any]) -> ValidationResult:
        text = await _read_policy_text(request)
        try:
            report = rt.services.policies.validate(text)
        except (PolicyLoadError, UnicodeError) as exc:
            raise _load_problem(exc) from None
        warnings = [
            ValidationIssue(path=w.path, line=w.line, column=w.column, message=w.message)
            for w in report.warnings
        ]
        ids = [p.id for p in report.policies]
        return ValidationResult(valid=True, policies=ids, warnings=warnings)

    return [
        create_policy,
        list_policies,
        validate,
        get_policy,
        update_policy,
        set_status,
        delete_policy,
        list_revisions,
        rollback,
    ]
