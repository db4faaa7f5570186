"""The Edge agent: every policy change deployed (`POST /api/v1/deploy`), the set synced.

`deploy(record, policy_set)` only queues (no I/O on the caller's path but
one small file write: policy changes are rare). The queue holds one entry
per policy id: a newer change of a policy supersedes one still queued, so
the agent never receives an older revision after a newer one from us. The
queue is kept in `directory/pending.json` (rewritten atomically on each
change) and a background task delivers it, retrying with backoff until the
agent acknowledges each entry (2xx); a restart delivers what was left.

`sync(policy_set, policies)` pushes the whole active set at once
(`POST /api/v1/sync`) and raises IntegrationError unless acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
from policy_core.errors import IntegrationError
from policy_core.integrations import CallGuard
from policy_core.ports import OutboxStatus, PolicyRecord

from policy_integrations._http import HttpTransport

__all__ = ["DEPLOY_PATH", "SYNC_PATH", "EdgeClient", "deploy_body"]

_log = logging.getLogger(__name__)

DEPLOY_PATH = "/api/v1/deploy"
SYNC_PATH = "/api/v1/sync"


class _Entry(msgspec.Struct, kw_only=True):
    key: str  # Idempotency-Key: <policy id>:<revision>[:deleted]
    body: msgspec.Raw
    queued_at: float


class _Pending(msgspec.Struct):
    entries: dict[str, _Entry]


_encoder = msgspec.json.Encoder()
_pending = msgspec.json.Decoder(_Pending)


def document_of(record: PolicyRecord) -> dict[str, Any]:
    """The document as JSON, with the status a deletion gives it (`deleted`)."""
    return {**record.document, "status": "deleted"} if record.deleted else record.document


def _priority(record: PolicyRecord) -> int:
    metadata = record.document.get("metadata")
    value = metadata.get("priority", 0) if isinstance(metadata, dict) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def deploy_body(
    record: PolicyRecord, policy_set: str, regions: Sequence[str] = ()
) -> tuple[str, bytes]:
    """(idempotency key, body) of `POST /api/v1/deploy` for one revision."""
    key = f"{record.id}:{record.revision}" + (":deleted" if record.deleted else "")
    body = {
        "policy": document_of(record),
        "revision": record.revision,
        "policySet": policy_set,
        "regions": list(regions),
        "priority": _priority(record),
    }
    return key, _encoder.encode(body)


class EdgeClient:
    """The EdgePublisher over HTTP: a superseding durable queue of deployments, and sync."""

    sink = "edge"

    def __init__(
        self,
        url: str,
        directory: Path,
        guard: CallGuard,
        *,
        token: str | None = None,
        regions: Sequence[str] = (),
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        sync_guard: CallGuard | None = None,
    ) -> None:
        self.url = url
        # A whole set may take longer than one call: sync has a guard (and timeout) of its own.
        self.sync_guard = sync_guard or CallGuard("edge", timeout=10.0, failures=1_000_000)
        self.transport = HttpTransport(
            url, token=token, timeout=max(guard.timeout, self.sync_guard.timeout)
        )
        self.guard = guard
        self.regions = tuple(regions)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file = self.directory / "pending.json"
        self._retry_initial, self._retry_max = retry_initial, retry_max
        self._entries: dict[str, _Entry] = {}
        if self._file.exists():
            try:
                self._entries = _pending.decode(self._file.read_bytes()).entries
            except msgspec.DecodeError:
                _log.error("edge: %s is unreadable; it is kept as .corrupt", self._file)
                os.replace(self._file, self._file.with_suffix(".corrupt"))
        self.delivered: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- EdgePublisher ----------------------------------------------------

    def deploy(self, record: PolicyRecord, policy_set: str) -> None:
        key, body = deploy_body(record, policy_set, self.regions)
        self._entries[record.id] = _Entry(key=key, body=msgspec.Raw(body), queued_at=time.time())
        self._save()
        self._wake.set()

    async def sync(self, policy_set: str, policies: Sequence[PolicyRecord]) -> None:
        body = _encoder.encode(
            {"policySet": policy_set, "policies": [document_of(r) for r in policies]}
        )

        async def attempt() -> None:
            status, _ = await self.transport.exchange(
                "POST", SYNC_PATH, body, {"Idempotency-Key": f"sync:{policy_set}"}
            )
            if not 200 <= status < 300:
                raise self.guard.status_error(status)

        await self.sync_guard.run("sync", attempt)

    # --- status and lifecycle ----------------------------------------------

    def pending(self) -> dict[str, str]:
        """Policy id -> idempotency key of what waits for the agent's acknowledgement."""
        return {pid: e.key for pid, e in self._entries.items()}

    def status(self) -> OutboxStatus:
        oldest = min((e.queued_at for e in self._entries.values()), default=None)
        return OutboxStatus(
            sink=self.sink,
            depth=len(self._entries),
            oldest_age_seconds=0.0 if oldest is None else max(0.0, time.time() - oldest),
            delivered=dict(self.delivered),
        )

    async def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self._wake.set()
            self._task = asyncio.create_task(self._loop(), name="edge-deploy")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.transport.close()

    async def drain(self, within: float) -> bool:
        """Wait until every queued deployment was acknowledged (True) or `within` s passed."""
        deadline = time.monotonic() + within
        while self._entries:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # --- delivery ---------------------------------------------------------

    def _save(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        tmp.write_bytes(_encoder.encode(_Pending(self._entries)))
        os.replace(tmp, self._file)

    async def _loop(self) -> None:
        delay = self._retry_initial
        while True:
            if not self._entries:
                self._wake.clear()
                await self._wake.wait()
                continue
            failed = False
            for policy_id, entry in list(self._entries.items()):
                try:
                    await self._deliver(entry)
                except IntegrationError as exc:
                    self._count(exc.outcome)
                    failed = True
                    continue
                self._count("ok")
                # Acknowledged: drop it unless a newer change replaced it meanwhile.
                if self._entries.get(policy_id) is entry:
                    del self._entries[policy_id]
                    self._save()
            if failed:
                # A new change does not cut the backoff short: the agent is failing.
                await asyncio.sleep(delay)
                delay = min(self._retry_max, delay * 2)
            else:
                delay = self._retry_initial

    async def _deliver(self, entry: _Entry) -> None:
        async def attempt() -> None:
            status, _ = await self.transport.exchange(
                "POST", DEPLOY_PATH, bytes(entry.body), {"Idempotency-Key": entry.key}
            )
            if not 200 <= status < 300:
                raise self.guard.status_error(status)

        await self.guard.run("deploy", attempt)

    def _count(self, outcome: str) -> None:
        self.delivered[outcome] = self.delivered.get(outcome, 0) + 1
