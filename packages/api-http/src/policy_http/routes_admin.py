"""Usage recording and service API keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Response, delete, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromQuery, JSONBody, PathParameter
from policy_core.ports import UsageEvent
from policy_core.services import ApiKeyService

from policy_http._http import problems
from policy_http._problems import ApiProblem
from policy_http._runtime import Runtime
from policy_http.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyItem,
    ApiKeyList,
    UsageRecorded,
    UsageRequest,
)

__all__ = ["admin_routes"]

_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKey": []}]
_KEYS = {"permission": "apikeys:manage", "rate_class": "admin"}


def admin_routes(rt: Runtime) -> list[HTTPRouteHandler]:
    """/usage and /api-keys over this app's runtime."""

    def key_service() -> ApiKeyService:
        service = rt.services.api_keys
        if service is None:
            raise ApiProblem(503, "API keys are not enabled on this server", code="no_api_keys")
        return service

    @post(
        "/usage",
        opt={"permission": "usage:write", "rate_class": "usage"},
        status_code=200,
        responses=problems(404, 413, 422, 503),
        security=_SECURITY,
        summary="Record spend for budget facts, or settle a reservation",
    )
    async def record_usage(data: JSONBody[UsageRequest]) -> UsageRecorded:
        usage = rt.services.usage
        if usage is None:
            raise ApiProblem(503, "no usage store is configured on this server", code="no_usage")
        if (data.key is None) == (data.reservation is None):
            raise ApiProblem(
                422,
                "give either `key` (spend to add) or `reservation` (the reservation id to settle)",
                code="invalid_usage",
            )
        try:
            event = UsageEvent(
                request_id=data.request_id or "",
                cost=data.usd,
                timestamp=data.at or datetime.now(UTC),
                user_id=data.user_id,
                team_id=data.team_id,
                project_id=data.project_id,
                provider=data.provider,
                model=data.model,
                prompt_tokens=data.prompt_tokens,
                completion_tokens=data.completion_tokens,
            )
            if data.reservation is not None:
                if data.at is not None:
                    raise ValueError("`at` is not given when settling: the spend is recorded now")
                keys = await usage.settle(data.reservation, data.usd, event=event)
                if keys is None:
                    raise ApiProblem(
                        404,
                        f"reservation {data.reservation!r} is unknown, already settled, "
                        "or expired more than a day ago; record the spend by key instead",
                        code="reservation_not_found",
                    )
                return UsageRecorded(usd=data.usd, reservation=data.reservation, keys=keys)
            assert data.key is not None
            await usage.record_spend(data.key, data.usd, data.at, event=event)
        except ValueError as exc:
            raise ApiProblem(422, str(exc), code="invalid_usage") from None
        return UsageRecorded(key=data.key, usd=data.usd, keys=(data.key,))

    @post(
        "/api-keys",
        opt=_KEYS,
        status_code=201,
        responses=problems(413, 503),
        security=_SECURITY,
        summary="Create a service API key (the key is shown once)",
    )
    async def create_key(data: JSONBody[ApiKeyCreate]) -> Response[ApiKeyCreated]:
        key, record = await key_service().create(data.name, tuple(data.roles))
        body = ApiKeyCreated(
            id=record.id,
            name=record.name,
            prefix=record.prefix,
            roles=record.roles,
            created_at=record.created_at,
            key=key,
        )
        # The key must not linger in shared caches.
        headers = {"Location": f"/api/v1/api-keys/{record.id}", "Cache-Control": "no-store"}
        return Response(body, status_code=201, headers=headers)

    @get(
        "/api-keys",
        opt=_KEYS,
        responses=problems(503),
        security=_SECURITY,
        summary="List service API keys (never the keys themselves)",
    )
    async def list_keys(include_revoked: FromQuery[bool] = False) -> ApiKeyList:
        records = await key_service().list(include_revoked=include_revoked)
        return ApiKeyList(
            items=[
                ApiKeyItem(
                    id=r.id,
                    name=r.name,
                    prefix=r.prefix,
                    roles=r.roles,
                    created_at=r.created_at,
                    revoked_at=r.revoked_at,
                )
                for r in records
            ]
        )

    @delete(
        "/api-keys/{key_id:str}",
        opt=_KEYS,
        responses=problems(404, 503),
        security=_SECURITY,
        summary="Revoke a service API key",
    )
    async def revoke_key(key_id: Annotated[str, PathParameter(max_length=128)]) -> None:
        if not await key_service().revoke(key_id):
            raise ApiProblem(404, f"no API key has the id {key_id!r}", code="api_key_not_found")
        rt.services.authenticator.forget_api_key(key_id)

    return [record_usage, create_key, list_keys, revoke_key]
