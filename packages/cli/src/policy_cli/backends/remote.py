"""Server mode (`--server URL`): the commands call the HTTP API (`/api/v1`).

A small synchronous client on the standard library: the CLI sends one request
at a time, so an async HTTP stack would buy nothing here.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from policy_cli.backends.base import (
    EvaluateRequest,
    Json,
    PolicyQuery,
    ResponseRequest,
    ValidationOutcome,
    batch_item_error,
)
from policy_cli.errors import CliError, ExitCode

__all__ = ["RemoteBackend"]

_BATCH = 500  # requests per /evaluate/batch call (the server accepts up to 1,000)
_TIMEOUT = 30.0


class RemoteBackend:
    """Every operation is one (or a few) HTTP calls to a running `llm-policy serve`."""

    def __init__(self, server: str, *, token: str | None, api_key: str | None) -> None:
        self.base = server.rstrip("/") + "/api/v1"
        self.mode = f"server {server}"
        self.headers: dict[str, str] = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        if api_key:
            self.headers["X-API-Key"] = api_key

    # --- transport ---------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[Any, dict[str, str]]:
        """Send one request; the decoded JSON body (None when empty) and the headers."""
        url = self.base + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - http(s) only
        for name, value in {**self.headers, **(headers or {})}.items():
            req.add_header(name, value)
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=_TIMEOUT) as resp:  # noqa: S310
                raw = resp.read()
                return (json.loads(raw) if raw else None), dict(resp.headers.items())
        except urllib.error.HTTPError as exc:
            raise _http_error(exc, method, url) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(
                f"cannot reach the server at {self.base}: {reason}",
                ExitCode.UNREACHABLE,
                hint="check --server / LLM_POLICY_SERVER and that `llm-policy serve` is running",
            ) from None

    def _json(self, method: str, path: str, payload: Any = None, **kw: Any) -> Any:
        body = None if payload is None else msgspec.json.encode(payload)
        return self.call(method, path, body=body, **kw)[0]

    # --- evaluation ----------------------------------------------------------------

    async def evaluate(self, requests: Sequence[EvaluateRequest]) -> list[Json]:
        if len(requests) == 1:
            return [self._json("POST", "/evaluate", _request_json(requests[0]))]
        out: list[Json] = []
        for start in range(0, len(requests), _BATCH):
            chunk = [_request_json(r) for r in requests[start : start + _BATCH]]
            answers = self._json("POST", "/evaluate/batch", {"requests": chunk})["decisions"]
            out.extend(_batch_entry(a) for a in answers)
        return out

    async def evaluate_response(self, request: ResponseRequest) -> Json:
        body: Json = {k: v for k, v in msgspec.to_builtins(request).items() if v is not None}
        result: Json = self._json("POST", "/evaluate/response", body)
        return result

    async def history(self, filters: Json, *, limit: int, cursor: str | None) -> Json:
        result: Json = self._json(
            "GET", "/evaluate/history", query={**filters, "limit": limit, "cursor": cursor}
        )
        return result

    async def stats(self, days: int) -> Json:
        result: Json = self._json("GET", "/evaluate/stats", query={"days": days})
        return result

    async def chain_size(self) -> int:
        raise _store_only()

    async def verify(self, progress: Callable[[int], None] | None) -> Json:
        raise _store_only()

    # --- policies --------------------------------------------------------------------

    async def validate(self, text: str, file: str) -> ValidationOutcome:
        try:
            raw, _ = self.call(
                "POST", "/policies/validate", body=text.encode(), content_type=_content_type(file)
            )
        except CliError as exc:
            if exc.exit_code != ExitCode.INVALID_POLICY or not isinstance(exc.data, dict):
                raise
            raw = exc.data
        errors = [{"file": file, **e} for e in raw.get("errors", [])]
        warnings = [{"file": file, **w} for w in raw.get("warnings", [])]
        return ValidationOutcome(
            file=file,
            valid=not errors and raw.get("valid", True) is not False,
            policies=list(raw.get("policies", [])),
            errors=errors,
            warnings=warnings,
        )

    async def create_policy(self, text: str, file: str) -> Json:
        raw, _ = self.call(
            "POST", "/policies", body=text.encode(), content_type=_content_type(file)
        )
        result: Json = raw
        return result

    async def update_policy(
        self, policy_id: str, text: str, file: str, expected_revision: int | None
    ) -> Json:
        path = f"/policies/{_quote(policy_id)}"
        if expected_revision is None:
            _, headers = self.call("GET", path)
            etag = _header(headers, "etag")
        else:
            etag = f'"{policy_id}:{expected_revision}"'
        raw, _ = self.call(
            "PUT",
            path,
            body=text.encode(),
            content_type=_content_type(file),
            headers={"If-Match": etag},
        )
        result: Json = raw
        return result

    async def delete_policy(self, policy_id: str) -> None:
        self.call("DELETE", f"/policies/{_quote(policy_id)}")

    async def list_policies(self, query: PolicyQuery) -> Json:
        result: Json = self._json("GET", "/policies", query=msgspec.to_builtins(query))
        return result

    async def get_policy(self, policy_id: str, revision: int | None) -> Json:
        result: Json = self._json(
            "GET", f"/policies/{_quote(policy_id)}", query={"revision": revision}
        )
        return result

    async def set_status(self, policy_id: str, status: str) -> Json:
        result: Json = self._json(
            "PATCH", f"/policies/{_quote(policy_id)}/status", {"status": status}
        )
        return result

    async def revisions(self, policy_id: str, *, limit: int, cursor: str | None) -> Json:
        result: Json = self._json(
            "GET",
            f"/policies/{_quote(policy_id)}/revisions",
            query={"limit": limit, "cursor": cursor},
        )
        return result

    async def rollback(self, policy_id: str, revision: int) -> Json:
        result: Json = self._json(
            "POST", f"/policies/{_quote(policy_id)}/rollback", {"revision": revision}
        )
        return result

    # --- API keys ----------------------------------------------------------------------

    async def create_api_key(self, name: str, roles: Sequence[str]) -> Json:
        result: Json = self._json("POST", "/api-keys", {"name": name, "roles": list(roles)})
        return result

    async def list_api_keys(self, include_revoked: bool) -> list[Json]:
        raw = self._json(
            "GET", "/api-keys", query={"include_revoked": "true" if include_revoked else None}
        )
        items: list[Json] = raw["items"] if isinstance(raw, dict) else raw
        return items

    async def revoke_api_key(self, key_id: str) -> None:
        self.call("DELETE", f"/api-keys/{_quote(key_id)}")


def _batch_entry(answer: Json) -> Json:
    """A batch answer as the CLI prints it: the decision, or the item's error entry."""
    if answer.pop("kind", "decision") == "error":
        code = str(answer.get("type", "")).rsplit(":", 1)[-1]
        return batch_item_error(code, str(answer.get("error", "")))
    return answer


def _request_json(req: EvaluateRequest) -> Json:
    out: Json = msgspec.to_builtins(req)
    return {k: v for k, v in out.items() if v is not None}


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _header(headers: dict[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return "*"


def _content_type(file: str) -> str:
    return "application/json" if file.endswith(".json") else "application/yaml"


def _http_error(exc: urllib.error.HTTPError, method: str, url: str) -> CliError:
    """Map an HTTP status (and its problem+json body) to a message and an exit code."""
    try:
        problem: Json = json.loads(exc.read() or b"{}")
    except ValueError:
        problem = {}
    detail = problem.get("detail") or problem.get("title") or exc.reason
    status = exc.code
    hint: str | None = None
    if status == 422 and "errors" in problem:
        lines = [
            f"{e.get('line', '?')}:{e.get('column', '?')}: {e.get('message', '')}"
            for e in problem["errors"]
        ]
        detail = "\n".join([str(detail), *lines])
    if status in (401, 403):
        code = ExitCode.USAGE
        hint = "pass a token with the needed role (--token / LLM_POLICY_TOKEN) or --api-key"
    elif status in (400, 422):
        code = ExitCode.INVALID_POLICY
    elif status >= 500 or status == 503:
        code = ExitCode.UNREACHABLE
        hint = "the server failed or its store is down; see its logs and /ready"
    elif status == 412:
        code = ExitCode.DENIED  # as RevisionConflict in store mode
        hint = "the policy changed meanwhile: get it again and reapply your change"
    else:
        code = ExitCode.USAGE
    return CliError(f"{method} {url}: {status} {detail}", code, hint=hint, data=problem)


def _store_only() -> CliError:
    return CliError(
        "verifying the decision log reads the store itself, not a server",
        ExitCode.USAGE,
        hint="unset --server / LLM_POLICY_SERVER and point LLM_POLICY_DATABASE_URL at the store",
    )
