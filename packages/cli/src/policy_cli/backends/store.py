"""Store mode (the default): the services of the configured deployment, in this process."""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, cast

import msgspec
from policy_core.ports import DecisionRecord, HistoryQuery, PolicyRecord, PolicyResource
from policy_core.services import EvaluationRequest, EvaluationResult, ResponseEvaluationRequest

from policy_cli.backends.base import (
    EvaluateRequest,
    Json,
    PolicyQuery,
    ResponseRequest,
    ValidationOutcome,
    batch_item_error,
)
from policy_cli.backends.validation import validate_text
from policy_cli.bootstrap import Services, bootstrap
from policy_cli.errors import CliError, ExitCode
from policy_cli.settings import Settings

__all__ = ["StoreBackend", "history_item", "policy_resource", "store_backend"]

T = TypeVar("T")


def policy_resource(record: PolicyRecord) -> Json:
    """A stored revision in the API's policy resource shape."""
    return PolicyResource.of(record).json()


def history_item(record: DecisionRecord) -> Json:
    """A stored decision in the API's history item shape (`policy_http.schemas.HistoryItem`).

    The full decision (`detail`) is not repeated: its obligations, errors and
    shadow are what a reviewer needs beside the record's own fields.
    """
    plain: Json = msgspec.to_builtins(record)
    plain.pop("chain", None)  # the API's shape; `evaluate verify` checks the links
    detail = plain.pop("detail")
    for name in ("obligations", "errors", "shadow"):
        plain[name] = detail.get(name, [] if name != "shadow" else None)
    return plain


def _author() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


def _time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--{name} {value!r} is not an RFC 3339 time",
            ExitCode.USAGE,
            hint="e.g. 2026-01-31T12:00:00Z",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class StoreBackend:
    """Every operation goes through the services (validation, revisions, audit) as the APIs do."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.mode = f"the configured store ({services.settings.deployment})"

    async def evaluate(self, requests: Sequence[EvaluateRequest]) -> list[Json]:
        core = [
            EvaluationRequest(
                context=r.context,
                policies=r.policies,
                namespace=r.namespace,
                dry_run=r.dry_run,
                trace=r.trace,
                request_id=r.request_id,
            )
            for r in requests
        ]
        if len(core) == 1:  # `evaluate` of one request: an unknown policy is the command's error
            return [r.to_builtins() for r in await self.services.evaluation.evaluate_batch(core)]
        results = await self.services.evaluation.evaluate_each(core)
        # As the server's batch: a request naming an unknown policy gets its own error entry.
        return [
            r.to_builtins() if isinstance(r, EvaluationResult) else batch_item_error(r.code, str(r))
            for r in results
        ]

    async def evaluate_response(self, request: ResponseRequest) -> Json:
        result = await self.services.evaluation.evaluate_response(
            ResponseEvaluationRequest(
                context=request.context,
                response=request.response,
                policies=request.policies,
                namespace=request.namespace,
                dry_run=request.dry_run,
                trace=request.trace,
                request_id=request.request_id,
                reservation=request.reservation,
            )
        )
        return result.to_builtins()

    async def validate(self, text: str, file: str) -> ValidationOutcome:
        return validate_text(text, file)

    async def create_policy(self, text: str, file: str) -> Json:
        record = await self.services.policies.create(text, author=_author(), file=file)
        return policy_resource(record)

    async def update_policy(
        self, policy_id: str, text: str, file: str, expected_revision: int | None
    ) -> Json:
        if expected_revision is None:
            expected_revision = (await self.services.policies.get(policy_id)).revision
        record = await self.services.policies.update(
            policy_id, text, expected_revision=expected_revision, author=_author(), file=file
        )
        return policy_resource(record)

    async def delete_policy(self, policy_id: str) -> None:
        await self.services.policies.delete(policy_id, author=_author())

    async def list_policies(self, query: PolicyQuery) -> Json:
        page = await self.services.policies.list(
            namespace=query.namespace,
            status=query.status,
            tag=query.tag,
            limit=query.limit,
            cursor=query.cursor,
        )
        return {"items": [policy_resource(r) for r in page.items], "next_cursor": page.next_cursor}

    async def get_policy(self, policy_id: str, revision: int | None) -> Json:
        return policy_resource(await self.services.policies.get(policy_id, revision))

    async def set_status(self, policy_id: str, status: str) -> Json:
        chosen = cast(Literal["active", "draft", "deprecated"], status)
        record = await self.services.policies.set_status(policy_id, chosen, author=_author())
        return policy_resource(record)

    async def revisions(self, policy_id: str, *, limit: int, cursor: str | None) -> Json:
        page = await self.services.policies.revisions(policy_id, limit=limit, cursor=cursor)
        return {"items": list(msgspec.to_builtins(page.items)), "next_cursor": page.next_cursor}

    async def rollback(self, policy_id: str, revision: int) -> Json:
        record = await self.services.policies.rollback(policy_id, revision, author=_author())
        return policy_resource(record)

    async def history(self, filters: Json, *, limit: int, cursor: str | None) -> Json:
        query = HistoryQuery(
            request_id=filters.get("request_id"),
            policy_id=filters.get("policy_id"),
            decision=filters.get("decision"),
            since=_time("since", filters.get("since")),
            until=_time("until", filters.get("until")),
            shadow_differs=bool(filters.get("shadow_differs")),
        )
        try:
            page = await self.services.decisions.history(query, limit=limit, cursor=cursor)
        except ValueError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
        return {"items": [history_item(r) for r in page.items], "next_cursor": page.next_cursor}

    async def stats(self, days: int) -> Json:
        result: Json = msgspec.to_builtins(await self.services.decisions.stats(days))
        return result

    async def chain_size(self) -> int:
        return await self._chains(self.services.decisions.chain_size())

    async def verify(self, progress: Callable[[int], None] | None) -> Json:
        report = await self._chains(self.services.decisions.verify(progress))
        result: Json = msgspec.to_builtins(report)
        result["ok"] = report.ok
        result["first"] = result["problems"][0] if report.problems else None
        return result

    async def _chains(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except NotImplementedError:
            raise CliError(
                f"{self.mode} keeps no hash chains to verify",
                ExitCode.USAGE,
                hint="the PostgreSQL deployments (single, cluster) keep them",
            ) from None

    async def create_api_key(self, name: str, roles: Sequence[str]) -> Json:
        key, record = await self.services.api_keys.create(name, roles)
        return {**_key_json(record), "key": key}

    async def list_api_keys(self, include_revoked: bool) -> list[Json]:
        records = await self.services.api_keys.list(include_revoked=include_revoked)
        return [_key_json(r) for r in records]

    async def revoke_api_key(self, key_id: str) -> None:
        if not await self.services.api_keys.revoke(key_id):
            raise CliError(
                f"no API key with id {key_id!r}",
                ExitCode.USAGE,
                hint="`llm-policy apikey list` shows the ids",
            )


def _key_json(record: Any) -> Json:
    plain: Json = msgspec.to_builtins(record)
    plain.pop("key_hash", None)  # never printed: it is what a stolen dump would attack
    return plain


@asynccontextmanager
async def store_backend(settings: Settings) -> AsyncIterator[StoreBackend]:
    """The store backend over the deployment's services, closed on the way out."""
    async with bootstrap(settings) as services:
        yield StoreBackend(services)
