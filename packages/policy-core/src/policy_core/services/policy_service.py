"""PolicyService: the policy use cases, over the store ports only.

Every write is validated and compiled together with the rest of the set
before it is stored (a document that does not compile is never stored), then
the engine is swapped atomically and the change is published so that other
instances reload.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
import uuid
from collections.abc import Collection
from typing import Any, Literal

import msgspec

from policy_core.engine import PolicyEngine
from policy_core.errors import (
    ComplianceUnavailable,
    IntegrationError,
    Issue,
    PolicyLoadError,
    PolicyNotCompliant,
    PolicyNotFound,
)
from policy_core.language import (
    ContextSchema,
    ValidationReport,
    integration_uses,
    load_policy_text,
    validate_policy_text,
)
from policy_core.model import Policy
from policy_core.ports import (
    ChangeFeed,
    ComplianceChecker,
    EdgePublisher,
    NewRevision,
    Page,
    PolicyChange,
    PolicyReader,
    PolicyRecord,
    PolicyWriter,
    RevisionInfo,
    Unsubscribe,
)
from policy_core.services.holder import EngineHolder
from policy_core.services.summary import summarize_change

__all__ = ["PolicyService"]

_log = logging.getLogger(__name__)

Status = Literal["active", "draft", "deprecated"]
_STATUSES = ("active", "draft", "deprecated")
_STATUS_LINE = re.compile(r"(?m)^status:[ \t]*[^\s#]+")


class PolicyService:
    """Create, update, delete, list, roll back and validate policies.

    `holder.current` is the engine compiled from every live stored policy;
    with a `context_schema`, validation also warns about paths it lacks;
    `instance_id` tags this instance's change notifications so it does not
    reload for its own writes. With `compliance` (LLM_POLICY_GOVERNANCE_ENFORCE)
    every create, update, rollback and activation is admitted by Governance
    first; with `edge` every change is queued for the Edge agent.
    """

    def __init__(
        self,
        *,
        reader: PolicyReader,
        writer: PolicyWriter,
        holder: EngineHolder,
        feed: ChangeFeed | None = None,
        default_decision: Literal["allow", "deny"] = "allow",
        instance_id: str | None = None,
        context_schema: ContextSchema | None = None,
        integrations: Collection[str] | None = None,
        compliance: ComplianceChecker | None = None,
        edge: EdgePublisher | None = None,
    ) -> None:
        self._compliance, self._edge = compliance, edge
        self._reader, self._writer, self._holder, self._feed = reader, writer, holder, feed
        self._context_schema = context_schema
        # The integrations the deployment provides: validation warns about the others.
        self._integrations = frozenset(integrations) if integrations is not None else None
        self._default: Literal["allow", "deny"] = default_decision
        self.instance_id = instance_id or uuid.uuid4().hex
        self._lock = asyncio.Lock()
        # id -> (revision, compiled Policy) of what the current engine holds
        self._loaded: dict[str, tuple[int, Policy]] = {}
        self._unsubscribe: Unsubscribe | None = None

    @property
    def holder(self) -> EngineHolder:
        return self._holder

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Follow the change feed, then load the stored policies into the engine.

        Subscribing first means a change written meanwhile is never missed
        (at worst it is loaded twice).
        """
        if self._feed is not None and self._unsubscribe is None:
            self._unsubscribe = await self._feed.subscribe(self._on_change)
        await self.reload()

    async def close(self) -> None:
        if self._unsubscribe is not None:
            await self._unsubscribe()
            self._unsubscribe = None

    async def reload(self) -> PolicyEngine:
        """Recompile from the store (re-parsing only revisions not already loaded) and swap."""
        async with self._lock:
            records = await self._reader.load_all()
            loaded: dict[str, tuple[int, Policy]] = {}
            for record in records:
                known = self._loaded.get(record.id)
                if known is not None and known[0] == record.revision:
                    loaded[record.id] = known
                else:
                    loaded[record.id] = (record.revision, self._parse_stored(record))
            engine = self._compile({k: v[1] for k, v in loaded.items()})
            self._loaded = loaded
            self._holder.swap(engine)
            return engine

    async def _on_change(self, change: PolicyChange) -> None:
        if change.origin == self.instance_id:
            return
        if change.policy_id == "*":  # a feed that may have missed changes (reconnected)
            await self.reload()
            return
        try:
            await self.apply_change(change.policy_id)
        except Exception:
            # Whatever went wrong applying one policy, a full reload is the way back.
            _log.exception("could not apply the change of policy %r; reloading", change.policy_id)
            await self.reload()

    async def apply_change(self, policy_id: str) -> PolicyEngine:
        """Bring one policy up to its stored current revision (or drop it if deleted) and swap.

        What a change notification from another instance does: it reads that
        policy alone, not the whole store, and reuses every other parsed policy.
        """
        async with self._lock:
            try:
                record: PolicyRecord | None = await self._reader.get(policy_id)
            except PolicyNotFound:
                record = None
            known = self._loaded.get(policy_id)
            if record is None:
                if known is None:
                    return self._holder.current
                remaining = {k: v[1] for k, v in self._loaded.items() if k != policy_id}
                engine = self._compile(remaining)
                self._loaded.pop(policy_id, None)
                self._holder.swap(engine)
                return engine
            if known is not None and known[0] == record.revision:
                return self._holder.current
            policy = self._parse_stored(record)
            engine = self._compile_with(policy)
            self._install(engine, record, policy)
            return engine

    # --- reads --------------------------------------------------------------

    async def get(self, policy_id: str, revision: int | None = None) -> PolicyRecord:
        """The current (or a given) revision; PolicyNotFound / RevisionNotFound."""
        return await self._reader.get(policy_id, revision)

    async def list(
        self,
        *,
        namespace: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[PolicyRecord]:
        """Live policies ordered by id; see PolicyReader.list."""
        return await self._reader.list(
            namespace=namespace, status=status, tag=tag, limit=limit, cursor=cursor
        )

    async def revisions(
        self, policy_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[RevisionInfo]:
        """History of an id, oldest first (author, time, hash, summary)."""
        return await self._reader.revisions(policy_id, limit=limit, cursor=cursor)

    def validate(self, text: str, *, file: str = "<request>") -> ValidationReport:
        """Validate without storing: a ValidationReport (policies, warnings) or PolicyLoadError."""
        report: ValidationReport = validate_policy_text(
            text, file=file, context_schema=self._context_schema, integrations=self._integrations
        )
        return report

    # --- writes -------------------------------------------------------------

    async def create(
        self, text: str, *, author: str | None = None, file: str = "<request>"
    ) -> PolicyRecord:
        """Store a new policy from one YAML/JSON document; PolicyAlreadyExists, PolicyLoadError."""
        async with self._lock:
            policy = self._parse_one(text, file)
            engine = self._compile_with(policy)
            await self._admit(policy, "create")
            record = await self._writer.create(
                self._revision(policy, text, author, summarize_change(None, policy.source))
            )
            self._install(engine, record, policy)
            await self._publish(record, "created")
            self._deploy(record)
        return record

    async def update(
        self,
        policy_id: str,
        text: str,
        *,
        expected_revision: int,
        author: str | None = None,
        file: str = "<request>",
    ) -> PolicyRecord:
        """Store a new revision if `expected_revision` is current (RevisionConflict otherwise)."""
        async with self._lock:
            policy = self._parse_one(text, file, expected_id=policy_id)
            current = await self._reader.get(policy_id)
            summary = summarize_change(current.document, policy.source)
            return await self._write_update(policy, text, expected_revision, author, summary)

    async def set_status(
        self,
        policy_id: str,
        status: Status,
        *,
        expected_revision: int | None = None,
        author: str | None = None,
    ) -> PolicyRecord:
        """Change the status (a new revision whose document says so)."""
        if status not in _STATUSES:
            raise ValueError(f"status must be one of {', '.join(_STATUSES)}, not {status!r}")
        async with self._lock:
            current = await self._reader.get(policy_id)
            expected = current.revision if expected_revision is None else expected_revision
            text = _with_status(current.text, current.document, status)
            policy = self._parse_one(text, f"<store:{policy_id}>", expected_id=policy_id)
            if policy.status.value != status:  # the text rewrite did not take: write JSON
                text = _json_text({**current.document, "status": status})
                policy = self._parse_one(text, f"<store:{policy_id}>", expected_id=policy_id)
            summary = f"status: {current.status} -> {status}"
            return await self._write_update(policy, text, expected, author, summary, "status")

    async def rollback(
        self,
        policy_id: str,
        to_revision: int,
        *,
        expected_revision: int | None = None,
        author: str | None = None,
    ) -> PolicyRecord:
        """Write a new revision equal to revision `to_revision` (RevisionNotFound if none)."""
        async with self._lock:
            current = await self._reader.get(policy_id)
            target = await self._reader.get(policy_id, to_revision)
            expected = current.revision if expected_revision is None else expected_revision
            policy = self._parse_one(target.text, f"<store:{policy_id}@{to_revision}>")
            summary = f"rollback to revision {to_revision}: " + summarize_change(
                current.document, target.document
            )
            return await self._write_update(
                policy, target.text, expected, author, summary, "rollback"
            )

    async def delete(
        self, policy_id: str, *, author: str | None = None, expected_revision: int | None = None
    ) -> None:
        """Soft delete (revisions stay; the id may be created again). PolicyNotFound if none."""
        async with self._lock:
            remaining = {k: v[1] for k, v in self._loaded.items() if k != policy_id}
            engine = self._compile(remaining)
            current = await self._reader.get(policy_id)
            await self._writer.delete(policy_id, author=author, expected_revision=expected_revision)
            self._loaded.pop(policy_id, None)
            self._holder.swap(engine)
            await self._publish(current, "deleted")
            self._deploy(msgspec.structs.replace(current, deleted=True))

    # --- internals ----------------------------------------------------------

    async def _write_update(
        self,
        policy: Policy,
        text: str,
        expected: int,
        author: str | None,
        summary: str,
        kind: Literal["updated", "status", "rollback"] = "updated",
    ) -> PolicyRecord:
        # Called with the lock held.
        engine = self._compile_with(policy)
        if kind != "status":
            await self._admit(policy, "update")
        elif policy.status.value == "active":
            await self._admit(policy, "activate")
        record = await self._writer.update(
            self._revision(policy, text, author, summary), expected_revision=expected
        )
        self._install(engine, record, policy)
        # Publishing under the lock keeps notifications in write order.
        await self._publish(record, kind)
        self._deploy(record)
        return record

    async def _admit(self, policy: Policy, action: Literal["create", "update", "activate"]) -> None:
        """Governance's compliance check of a write (enforced: refuse unless it says compliant)."""
        if self._compliance is None:
            return
        try:
            report = await self._compliance.check(policy.source, action)
        except IntegrationError as exc:
            raise ComplianceUnavailable(policy.id, action, str(exc)) from None
        except Exception as exc:  # never a silent pass
            raise ComplianceUnavailable(policy.id, action, type(exc).__name__) from None
        if not report.compliant:
            raise PolicyNotCompliant(
                policy.id, action, [msgspec.to_builtins(v) for v in report.violations]
            )

    def _deploy(self, record: PolicyRecord) -> None:
        """Queue the change for the Edge agent (never fails the write: the queue retries)."""
        if self._edge is None:
            return
        try:
            self._edge.deploy(record, self._holder.current.policy_set())
        except Exception:
            _log.exception("could not queue policy %r for the edge", record.id)

    async def edge_sync(self) -> builtins.list[PolicyRecord]:
        """Push every active policy to the Edge agent at once (`POST /api/v1/sync`).

        Returns what was pushed; raises ValueError when no Edge agent is
        configured and IntegrationError when it does not acknowledge.
        """
        if self._edge is None:
            raise ValueError("no Edge agent is configured (LLM_POLICY_EDGE_URL)")
        records = [r for r in await self._reader.load_all() if r.status == "active"]
        records.sort(key=lambda r: r.id)
        await self._edge.sync(self._holder.current.policy_set(), records)
        return records

    def _install(self, engine: PolicyEngine, record: PolicyRecord, policy: Policy) -> None:
        self._loaded[record.id] = (record.revision, policy)
        self._holder.swap(engine)

    async def _publish(self, record: PolicyRecord, kind: Any) -> None:
        if self._feed is None:
            return
        change = PolicyChange(
            policy_id=record.id, revision=record.revision, kind=kind, origin=self.instance_id
        )
        try:
            await self._feed.publish(change)
        except Exception:
            # The write is stored; other instances catch up on their next reload.
            _log.exception("could not publish the change of policy %r", record.id)

    def _parse_one(self, text: str, file: str, expected_id: str | None = None) -> Policy:
        policies = load_policy_text(text, file=file)
        if len(policies) != 1:
            raise PolicyLoadError(
                [Issue(file=file, line=1, column=1, message=_one_document(len(policies)))]
            )
        policy: Policy = policies[0]
        if expected_id is not None and policy.id != expected_id:
            message = (
                f"metadata.id {policy.id!r} does not match the policy being written "
                f"{expected_id!r}; ids cannot be renamed (create a new policy instead)"
            )
            raise PolicyLoadError([Issue(file=file, line=1, column=1, message=message)])
        self._warn_integrations(policy)
        return policy

    def _parse_stored(self, record: PolicyRecord) -> Policy:
        return self._parse_one(record.text, f"<store:{record.id}@{record.revision}>")

    def _warn_integrations(self, policy: Policy) -> None:
        """Log (at every load) each integration the policy uses that the deployment lacks."""
        if self._integrations is None:
            return
        for integration, where in sorted(integration_uses(policy).items()):
            if integration not in self._integrations:
                _log.warning(
                    "policy %s: %s, but the %s integration is not configured "
                    "(LLM_POLICY_%s_URL): the rule always fails",
                    policy.id,
                    where,
                    integration,
                    integration.upper(),
                )

    def _compile_with(self, policy: Policy) -> PolicyEngine:
        policies = {k: v[1] for k, v in self._loaded.items()}
        policies[policy.id] = policy
        return self._compile(policies)

    def _compile(self, policies: dict[str, Policy]) -> PolicyEngine:
        # reuse: every policy the serving engine has compiled (same id, digest and
        # status) is taken from it as it is; only the changed one is compiled.
        try:
            return PolicyEngine(
                [policies[k] for k in sorted(policies)],
                default_decision=self._default,
                reuse=self._holder.current,
            )
        except ValueError as exc:
            issue = Issue(file="<policy set>", line=1, column=1, message=str(exc))
            raise PolicyLoadError([issue]) from exc

    @staticmethod
    def _revision(policy: Policy, text: str, author: str | None, summary: str) -> NewRevision:
        return NewRevision(
            id=policy.id,
            namespace=policy.namespace,
            status=policy.status.value,
            document=policy.source,
            text=text,
            hash=policy.digest,
            tags=tuple(policy.metadata.tags),
            author=author,
            summary=summary,
        )


def _one_document(count: int) -> str:
    return f"expected exactly one policy document, found {count}; write one policy per request"


def _json_text(document: dict[str, Any]) -> str:
    return msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n"


def _with_status(text: str, document: dict[str, Any], status: str) -> str:
    """The stored text with its status changed, keeping the author's YAML when possible."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return _json_text({**document, "status": status})
    new, count = _STATUS_LINE.subn(f"status: {status}", text, count=1)
    if count:
        return new
    if not stripped.startswith("---") and "\n---" not in text:
        return f"status: {status}\n{text}"
    return _json_text({**document, "status": status})
