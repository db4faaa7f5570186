"""What every command talks to, whatever the mode (local files, the store, a server).

Results are plain JSON-compatible values in the wire shapes of the HTTP API
(docs/cli.md), so that a command prints the same thing in every mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from policy_cli.errors import CliError, ExitCode

__all__ = [
    "Backend",
    "EvaluateRequest",
    "Json",
    "PolicyQuery",
    "ValidationOutcome",
    "batch_item_error",
    "not_supported",
]

Json = dict[str, Any]


def batch_item_error(code: str, message: str) -> Json:
    """The entry that takes the place of a batch request that could not be decided
    (an unknown policy id); `evaluate batch` adds its line number and exits 2."""
    return {"error": message, "code": code}


class EvaluateRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One evaluation, as `POST /api/v1/evaluate` takes it (and one line of a batch file)."""

    context: dict[str, Any]
    policies: list[str] | None = None
    namespace: str | None = None
    dry_run: bool = False
    trace: bool = False
    request_id: str | None = None


class ResponseRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A model's response to judge, as `POST /api/v1/evaluate/response` takes it."""

    context: dict[str, Any]
    response: dict[str, Any]
    policies: list[str] | None = None
    namespace: str | None = None
    dry_run: bool = False
    trace: bool = False
    request_id: str | None = None
    reservation: str | None = None


class PolicyQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which policies `policy list` (and `policy export`) asks for: filters and one page."""

    namespace: str | None = None
    status: str | None = None
    tag: str | None = None
    limit: int = 50
    cursor: str | None = None


class ValidationOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """Errors and warnings of one validated document, each `{file, line, column, message}`."""

    file: str
    valid: bool
    policies: list[str] = []
    errors: list[Json] = []
    warnings: list[Json] = []


def not_supported(what: str, mode: str) -> CliError:
    return CliError(
        f"{what} is not available with {mode}",
        ExitCode.USAGE,
        hint="use the configured store (no --policies) or a running server (--server URL)",
    )


class Backend(Protocol):
    """The operations behind the commands; a mode may refuse some with `not_supported`."""

    mode: str

    async def evaluate(self, requests: Sequence[EvaluateRequest]) -> list[Json]:
        """Decisions (policy language 5.7 plus request_id, cached), in request order."""
        ...

    async def evaluate_response(self, request: ResponseRequest) -> Json:
        """The response decision (policy language 7.1) plus request_id and cached."""
        ...

    async def validate(self, text: str, file: str) -> ValidationOutcome: ...

    async def create_policy(self, text: str, file: str) -> Json:
        """Store a new policy; `file` names the source in errors (and its format by suffix)."""
        ...

    async def update_policy(
        self, policy_id: str, text: str, file: str, expected_revision: int | None
    ) -> Json: ...

    async def delete_policy(self, policy_id: str) -> None: ...

    async def list_policies(self, query: PolicyQuery) -> Json:
        """`{items: [policy resource], next_cursor}`."""
        ...

    async def get_policy(self, policy_id: str, revision: int | None) -> Json: ...

    async def set_status(self, policy_id: str, status: str) -> Json: ...

    async def revisions(self, policy_id: str, *, limit: int, cursor: str | None) -> Json: ...

    async def rollback(self, policy_id: str, revision: int) -> Json: ...

    async def history(self, filters: Json, *, limit: int, cursor: str | None) -> Json: ...

    async def stats(self, days: int) -> Json: ...

    async def chain_size(self) -> int:
        """How many stored decision records `verify` reads (for its progress bar)."""
        ...

    async def verify(self, progress: Callable[[int], None] | None) -> Json:
        """The decision log's hash chains checked (`ChainReport` as JSON)."""
        ...

    async def create_api_key(self, name: str, roles: Sequence[str]) -> Json:
        """The new key's record plus `key`, the secret shown this once."""
        ...

    async def list_api_keys(self, include_revoked: bool) -> list[Json]: ...

    async def revoke_api_key(self, key_id: str) -> None: ...
