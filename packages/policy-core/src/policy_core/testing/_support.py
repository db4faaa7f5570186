"""Small helpers shared by the contract suites (no pytest import: the core stays light)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from policy_core.model import Decision
from policy_core.ports import DecisionRecord, NewRevision

__all__ = ["T0", "decision_record", "eventually", "new_revision", "raises"]

#: A fixed instant the suites build timestamps from.
T0 = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


@contextmanager
def raises(kind: type[BaseException]) -> Iterator[list[BaseException]]:
    """Assert that the block raises `kind`; the caught exception lands in the yielded list."""
    caught: list[BaseException] = []
    try:
        yield caught
    except kind as exc:
        caught.append(exc)
    else:
        raise AssertionError(f"expected {kind.__name__} to be raised")


def new_revision(
    policy_id: str,
    *,
    namespace: str = "default",
    status: str = "active",
    tags: tuple[str, ...] = (),
    marker: str = "",
    author: str | None = "tester",
    summary: str = "",
) -> NewRevision:
    """A plausible stored revision; `marker` changes the document so revisions differ."""
    document: dict[str, Any] = {
        "status": status,
        "metadata": {"id": policy_id, "namespace": namespace, "tags": list(tags)},
        "rules": [{"id": "r1", "action": {"decision": "allow", "reason": marker or None}}],
    }
    text = f"metadata: {{id: {policy_id}}}  # {marker}\n"
    return NewRevision(
        id=policy_id,
        namespace=namespace,
        status=status,  # type: ignore[arg-type]
        document=document,
        text=text,
        hash="sha256:" + hashlib.sha256(f"{policy_id}|{marker}|{status}".encode()).hexdigest(),
        tags=tags,
        author=author,
        summary=summary,
    )


def decision_record(
    request_id: str,
    *,
    decision: str = "allow",
    at: datetime = T0,
    policies: tuple[str, ...] = (),
    rules: tuple[str, ...] = (),
    latency_ms: float = 1.0,
    context: dict[str, Any] | None = None,
    shadow: str | None = None,
) -> DecisionRecord:
    """A decision-log record with a matching `detail` (and a shadow decision when given)."""
    detail = Decision(
        decision=decision,  # type: ignore[arg-type]
        allowed=decision != "deny",
        reason=f"{decision} by test",
        matched_policies=policies,
        matched_rules=rules,
        policy_set="sha256:" + "0" * 64,
        shadow=None
        if shadow is None
        else Decision(
            decision=shadow,  # type: ignore[arg-type]
            allowed=shadow != "deny",
            reason=f"{shadow} by the draft",
            matched_policies=("draft",),
            matched_rules=("draft/r",),
        ),
    )
    return DecisionRecord(
        request_id=request_id,
        policy_set=detail.policy_set,
        decision=decision,
        matched_policies=policies,
        matched_rules=rules,
        reason=detail.reason,
        context_digest="sha256:" + "1" * 64,
        context=context if context is not None else {"user": {"id": "u1"}},
        detail=detail,
        latency_ms=latency_ms,
        created_at=at,
    )


async def eventually(check: Callable[[], bool], *, within: float = 5.0) -> None:
    """Wait until `check()` holds (for adapters that deliver asynchronously)."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
