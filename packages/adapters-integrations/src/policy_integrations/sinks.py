"""The sinks: audited decisions to Governance `audit/log`, usage to CostOps `track`.

Each sink is an `Outbox` (durable, at least once) whose events are encoded
here into the services' camelCase bodies and delivered by `PostDelivery`:
one `POST` per event with `Idempotency-Key: <request id>`, through a call
guard (timeout, breaker, call metrics) of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from policy_core.integrations import CallGuard
from policy_core.ports import DecisionRecord, UsageEvent

from policy_integrations._http import HttpTransport
from policy_integrations.outbox import Outbox, Rejected

__all__ = [
    "AUDIT_PATH",
    "TRACK_PATH",
    "AuditEvent",
    "PostDelivery",
    "TrackEvent",
    "audit_body",
    "governance_audit_outbox",
    "track_body",
    "usage_track_outbox",
]

AUDIT_PATH = "/api/v1/audit/log"
TRACK_PATH = "/api/v1/track"


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The body of Governance `POST /api/v1/audit/log`."""

    event_id: str
    timestamp: datetime
    decision: str
    reason: str | None
    policy_set: str
    matched_policies: tuple[str, ...]
    matched_rules: tuple[str, ...]
    user_id: str | None
    team_id: str | None
    project_id: str | None
    provider: str | None
    model: str | None


class TrackEvent(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The body of CostOps `POST /api/v1/track`."""

    request_id: str
    user_id: str | None
    team_id: str | None
    project_id: str | None
    provider: str | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: float
    timestamp: datetime


_encoder = msgspec.json.Encoder()


def _id(context: Mapping[str, Any], section: str, field: str = "id") -> str | None:
    """`context[section][field]` as a string (numbers too), else None.

    On the request path (the outbox encodes in `submit`): the exact-type
    checks come first, the ABC checks (slow) only for other mappings and ints.
    """
    part = context.get(section)
    if type(part) is not dict and (part is None or not isinstance(part, Mapping)):
        return None
    value = part.get(field)
    if type(value) is str:
        return value
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    return None


def audit_body(record: DecisionRecord) -> tuple[str, bytes]:
    """(idempotency key, JSON body) of an audited decision: the key is the request id."""
    context = record.context
    event = AuditEvent(
        event_id=record.request_id,
        timestamp=record.created_at,
        decision=record.decision,
        reason=record.reason,
        policy_set=record.policy_set,
        matched_policies=tuple(record.matched_policies),
        matched_rules=tuple(record.matched_rules),
        user_id=_id(context, "user"),
        team_id=_id(context, "team"),
        project_id=_id(context, "project"),
        provider=_id(context, "llm", "provider"),
        model=_id(context, "llm", "model"),
    )
    return record.request_id, _encoder.encode(event)


def track_body(event: UsageEvent) -> tuple[str, bytes]:
    """(idempotency key, JSON body) of recorded usage: the key is the request id."""
    body = TrackEvent(
        request_id=event.request_id,
        user_id=event.user_id,
        team_id=event.team_id,
        project_id=event.project_id,
        provider=event.provider,
        model=event.model,
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        cost=event.cost,
        timestamp=event.timestamp,
    )
    return event.request_id, _encoder.encode(body)


class PostDelivery:
    """Delivers one event: `POST path` with its `Idempotency-Key`, 2xx acknowledges it.

    A 5xx, 408, 429, timeout or connection fault raises (the outbox retries);
    another 4xx raises `Rejected` (retrying cannot help: the event is kept aside).
    """

    def __init__(self, transport: HttpTransport, guard: CallGuard, call: str, path: str) -> None:
        self.transport, self.guard, self.call, self.path = transport, guard, call, path

    async def __call__(self, key: str, body: bytes) -> None:
        async def attempt() -> int:
            status, _ = await self.transport.exchange(
                "POST", self.path, body, {"Idempotency-Key": key}
            )
            if status >= 500 or status in (408, 429):
                raise self.guard.status_error(status)
            return status

        status = await self.guard.run(self.call, attempt)
        if not 200 <= status < 300:
            raise Rejected(f"{self.guard.integration} answered HTTP {status} for {key}")

    async def close(self) -> None:
        await self.transport.close()


def governance_audit_outbox(
    url: str, directory: Path, guard: CallGuard, *, token: str | None = None, **options: Any
) -> tuple[Outbox[DecisionRecord], PostDelivery]:
    """The Governance audit sink (a GovernanceSink) and its delivery (close it on shutdown)."""
    delivery = PostDelivery(
        HttpTransport(url, token=token, timeout=guard.timeout), guard, "audit_log", AUDIT_PATH
    )
    outbox: Outbox[DecisionRecord] = Outbox(
        "governance_audit", directory, encode=audit_body, deliver=delivery, **options
    )
    return outbox, delivery


def usage_track_outbox(
    url: str, directory: Path, guard: CallGuard, *, token: str | None = None, **options: Any
) -> tuple[Outbox[UsageEvent], PostDelivery]:
    """The CostOps track sink (a UsageSink) and its delivery (close it on shutdown)."""
    delivery = PostDelivery(
        HttpTransport(url, token=token, timeout=guard.timeout), guard, "track", TRACK_PATH
    )
    outbox: Outbox[UsageEvent] = Outbox(
        "costops_track", directory, encode=track_body, deliver=delivery, **options
    )
    return outbox, delivery
