"""Local-files mode (`--policies PATH`): the engine in process, no server, no database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
from policy_core.engine import PolicyEngine
from policy_core.errors import PolicyNotFound
from policy_core.language import load_policies
from policy_core.model import Policy

from policy_cli.backends.base import (
    EvaluateRequest,
    Json,
    PolicyQuery,
    ResponseRequest,
    ValidationOutcome,
    batch_item_error,
    not_supported,
)
from policy_cli.backends.validation import validate_text
from policy_cli.errors import CliError, ExitCode

__all__ = ["LocalBackend", "decision_json", "policy_json"]

_MODE = "local policy files (--policies)"


def decision_json(decision: Any, request_id: str | None, *, cached: bool = False) -> Json:
    """A Decision as the API returns it: its fields plus `request_id` and `cached`."""
    out: Json = msgspec.to_builtins(decision)
    out["request_id"] = request_id or str(uuid.uuid4())
    out["cached"] = cached
    return out


def policy_json(policy: Policy) -> Json:
    """A loaded policy in the shape of the API's policy resource (no revision: files have none)."""
    return {
        "id": policy.id,
        "namespace": policy.namespace,
        "revision": None,
        "status": str(getattr(policy.status, "value", policy.status)),
        "document": policy.source,
        "file": policy.file,
        "hash": policy.digest,
    }


class LocalBackend:
    """Reads policies from files once; evaluation and reads only."""

    mode = _MODE

    def __init__(
        self, paths: Sequence[str], *, default_decision: Literal["allow", "deny"] = "allow"
    ) -> None:
        missing = [p for p in paths if not _exists(p)]
        if missing:
            raise CliError(
                f"no such policy file or directory: {', '.join(missing)}",
                ExitCode.USAGE,
                hint="pass --policies a YAML/JSON file or a directory of them",
            )
        # PolicyLoadError propagates: the command maps it to exit 3 with every issue.
        self.policies: list[Policy] = list(load_policies(list(paths)))
        self.engine = PolicyEngine(self.policies, default_decision=default_decision)
        self._usage: Any = None

    async def evaluate(self, requests: Sequence[EvaluateRequest]) -> list[Json]:
        out: list[Json] = []
        for req in requests:
            try:
                selection = self.engine.select(req.policies, req.namespace)
            except PolicyNotFound as exc:
                if len(requests) == 1:
                    raise CliError(str(exc), ExitCode.USAGE) from None
                out.append(batch_item_error(exc.code, str(exc)))  # as the server's batch
                continue
            if selection.uses_facts:
                decision = await self._evaluate_stateful(req)
            else:
                decision = selection.evaluate(req.context, trace=req.trace)
            out.append(decision_json(decision, req.request_id))
        return out

    async def evaluate_response(self, request: ResponseRequest) -> Json:
        try:
            selection = self.engine.select(request.policies, request.namespace)
        except PolicyNotFound as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
        facts = None
        if selection.response_uses_facts:
            if self._usage is None:
                from policy_core.memory import MemoryUsageStore

                self._usage = MemoryUsageStore()
            facts = await selection.gather_facts(
                request.context,
                usage=self._usage,
                record=not request.dry_run,
                response=request.response,
            )
        decision = selection.evaluate_response(
            request.context, request.response, trace=request.trace, facts=facts
        )
        return decision_json(decision, request.request_id)

    async def _evaluate_stateful(self, req: EvaluateRequest) -> Any:
        # Local mode has no shared counters: a fresh in-memory usage store per
        # run, so rate limits count only the requests of this invocation.
        if self._usage is None:
            from policy_core.memory import MemoryUsageStore

            self._usage = MemoryUsageStore()
        return await self.engine.evaluate_async(
            req.context,
            usage=self._usage,
            record=not req.dry_run,
            policies=req.policies,
            namespace=req.namespace,
            trace=req.trace,
        )

    async def validate(self, text: str, file: str) -> ValidationOutcome:
        return validate_text(text, file)

    async def list_policies(self, query: PolicyQuery) -> Json:
        items = [
            policy_json(p)
            for p in sorted(self.policies, key=lambda p: p.id)
            if (query.namespace is None or p.namespace == query.namespace)
            and (query.status is None or policy_json(p)["status"] == query.status)
            and (query.tag is None or query.tag in p.metadata.tags)
        ]
        return {"items": items[: query.limit], "next_cursor": None}

    async def get_policy(self, policy_id: str, revision: int | None) -> Json:
        for p in self.policies:
            if p.id == policy_id:
                return policy_json(p)
        raise CliError(str(PolicyNotFound(policy_id)), ExitCode.USAGE)

    async def create_policy(self, text: str, file: str) -> Json:
        raise not_supported("creating a policy", _MODE)

    async def update_policy(
        self, policy_id: str, text: str, file: str, expected_revision: int | None
    ) -> Json:
        raise not_supported("updating a policy", _MODE)

    async def delete_policy(self, policy_id: str) -> None:
        raise not_supported("deleting a policy", _MODE)

    async def set_status(self, policy_id: str, status: str) -> Json:
        raise not_supported("changing a status", _MODE)

    async def revisions(self, policy_id: str, *, limit: int, cursor: str | None) -> Json:
        raise not_supported("revision history", _MODE)

    async def rollback(self, policy_id: str, revision: int) -> Json:
        raise not_supported("rollback", _MODE)

    async def history(self, filters: Json, *, limit: int, cursor: str | None) -> Json:
        raise not_supported("decision history", _MODE)

    async def stats(self, days: int) -> Json:
        raise not_supported("decision statistics", _MODE)

    async def chain_size(self) -> int:
        raise not_supported("verifying the decision log", _MODE)

    async def verify(self, progress: Callable[[int], None] | None) -> Json:
        raise not_supported("verifying the decision log", _MODE)

    async def create_api_key(self, name: str, roles: Sequence[str]) -> Json:
        raise not_supported("API keys", _MODE)

    async def list_api_keys(self, include_revoked: bool) -> list[Json]:
        raise not_supported("API keys", _MODE)

    async def revoke_api_key(self, key_id: str) -> None:
        raise not_supported("API keys", _MODE)


def _exists(path: str) -> bool:
    return Path(path).exists()
