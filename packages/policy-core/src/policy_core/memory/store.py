"""In-memory policy store: immutable revisions, a current pointer, soft delete."""

from __future__ import annotations

import asyncio
import builtins
from dataclasses import dataclass, field

import msgspec

from policy_core.cursors import decode_cursor, encode_cursor
from policy_core.errors import (
    PolicyAlreadyExists,
    PolicyNotFound,
    RevisionConflict,
    RevisionNotFound,
)
from policy_core.ports import Clock, NewRevision, Page, PolicyRecord, RevisionInfo

__all__ = ["MemoryPolicyStore"]


@dataclass
class _Entry:
    revisions: list[PolicyRecord] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    deleted: bool = False

    @property
    def current(self) -> PolicyRecord:
        return self.revisions[-1]


class MemoryPolicyStore:
    """A PolicyReader and PolicyWriter kept in a dict; safe under asyncio concurrency."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        # Writes never await inside the critical section, but the lock keeps
        # that true if someone adds an await later.
        self._lock = asyncio.Lock()

    # --- reader -------------------------------------------------------------

    async def get(self, policy_id: str, revision: int | None = None) -> PolicyRecord:
        entry = self._entries.get(policy_id)
        if entry is None or (revision is None and entry.deleted):
            raise PolicyNotFound(policy_id)
        if revision is None:
            return entry.current
        if not 1 <= revision <= len(entry.revisions):
            raise RevisionNotFound(policy_id, revision)
        record = entry.revisions[revision - 1]
        return msgspec.structs.replace(record, deleted=True) if entry.deleted else record

    async def list(
        self,
        *,
        namespace: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[PolicyRecord]:
        after = str(decode_cursor(cursor, str)[0]) if cursor else None
        matches = [
            r
            for r in await self.load_all()
            if (after is None or r.id > after)
            and (namespace is None or r.namespace == namespace)
            and (status is None or r.status == status)
            and (tag is None or tag in r.tags)
        ]
        page = matches[: max(limit, 0)]
        more = len(matches) > len(page) and page
        return Page(items=tuple(page), next_cursor=encode_cursor(page[-1].id) if more else None)

    async def load_all(self) -> builtins.list[PolicyRecord]:
        return [e.current for _, e in sorted(self._entries.items()) if not e.deleted]

    async def revisions(
        self, policy_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[RevisionInfo]:
        entry = self._entries.get(policy_id)
        if entry is None:
            raise PolicyNotFound(policy_id)
        start = int(decode_cursor(cursor, int)[0]) if cursor else 0
        chosen = entry.revisions[start : start + max(limit, 0)]
        items = tuple(
            RevisionInfo(
                revision=r.revision,
                author=r.author,
                created_at=r.updated_at,
                hash=r.hash,
                summary=entry.summaries[r.revision - 1],
            )
            for r in chosen
        )
        end = start + len(chosen)
        more = end < len(entry.revisions) and chosen
        return Page(items=items, next_cursor=encode_cursor(end) if more else None)

    # --- writer -------------------------------------------------------------

    async def create(self, revision: NewRevision) -> PolicyRecord:
        async with self._lock:
            entry = self._entries.get(revision.id)
            if entry is not None and not entry.deleted:
                raise PolicyAlreadyExists(revision.id)
            entry = entry or _Entry()
            self._entries[revision.id] = entry
            return self._append(entry, revision, first=True)

    async def update(self, revision: NewRevision, expected_revision: int) -> PolicyRecord:
        async with self._lock:
            entry = self._live(revision.id)
            if entry.current.revision != expected_revision:
                raise RevisionConflict(revision.id, expected_revision, entry.current.revision)
            return self._append(entry, revision, first=False)

    async def delete(
        self, policy_id: str, *, author: str | None = None, expected_revision: int | None = None
    ) -> None:
        async with self._lock:
            entry = self._live(policy_id)
            actual = entry.current.revision
            if expected_revision is not None and actual != expected_revision:
                raise RevisionConflict(policy_id, expected_revision, actual)
            entry.deleted = True

    def _live(self, policy_id: str) -> _Entry:
        entry = self._entries.get(policy_id)
        if entry is None or entry.deleted:
            raise PolicyNotFound(policy_id)
        return entry

    def _append(self, entry: _Entry, new: NewRevision, *, first: bool) -> PolicyRecord:
        now = self._clock.now()
        created = now if first or not entry.revisions else entry.current.created_at
        record = PolicyRecord(
            id=new.id,
            namespace=new.namespace,
            revision=len(entry.revisions) + 1,
            status=new.status,
            document=new.document,
            text=new.text,
            hash=new.hash,
            author=new.author,
            tags=new.tags,
            created_at=created,
            updated_at=now,
        )
        entry.revisions.append(record)
        entry.summaries.append(new.summary)
        entry.deleted = False
        return record
