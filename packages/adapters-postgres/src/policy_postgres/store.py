"""PostgresPolicyStore: PolicyReader + PolicyWriter over the policies/policy_revisions tables."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any, NoReturn

import msgspec
from policy_core.cursors import decode_cursor, encode_cursor
from policy_core.errors import (
    PolicyAlreadyExists,
    PolicyNotFound,
    RevisionConflict,
    RevisionNotFound,
)
from policy_core.memory import SystemClock
from policy_core.ports import Clock, NewRevision, Page, PolicyRecord, RevisionInfo
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from policy_postgres._sql import sql
from policy_postgres.errors import translate_errors

__all__ = ["PostgresPolicyStore"]

_decode_doc = msgspec.json.Decoder(dict[str, Any])
_encode = msgspec.json.Encoder()

_REVISIONS = b"""
SELECT revision, author, created_at, hash, summary FROM policy_revisions
 WHERE policy_id = %s AND revision > %s ORDER BY revision LIMIT %s
"""


class PostgresPolicyStore:
    """Policies in PostgreSQL. The pool is the caller's unless `owns_pool` (then `close` closes it).

    The connection's search_path selects the schema (migrated with `policy_postgres.migrate`).
    """

    def __init__(
        self, pool: AsyncConnectionPool[Any], *, clock: Clock | None = None, owns_pool: bool = False
    ) -> None:
        self._pool = pool
        self._clock: Clock = clock or SystemClock()
        self.owns_pool = owns_pool

    async def close(self) -> None:
        if self.owns_pool:
            await self._pool.close()

    # --- reader -------------------------------------------------------------

    async def get(self, policy_id: str, revision: int | None = None) -> PolicyRecord:
        async with translate_errors("read a policy"), self._pool.connection() as conn:
            cur = await conn.execute(sql("policy_get"), {"id": policy_id, "revision": revision})
            row = await cur.fetchone()
            if row is not None:
                record = _record(row)
                if revision is None and record.deleted:
                    raise PolicyNotFound(policy_id)
                return record
            if revision is None:
                raise PolicyNotFound(policy_id)
            exists = await conn.execute(b"SELECT 1 FROM policies WHERE id = %s", (policy_id,))
            if await exists.fetchone() is None:
                raise PolicyNotFound(policy_id)
            raise RevisionNotFound(policy_id, revision)

    async def list(
        self,
        *,
        namespace: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[PolicyRecord]:
        limit = max(limit, 0)
        after = str(decode_cursor(cursor, str)[0]) if cursor else None
        params = {
            "after": after,
            "namespace": namespace,
            "status": status,
            "tag": tag,
            "limit": limit + 1,
        }
        async with translate_errors("list policies"), self._pool.connection() as conn:
            cur = await conn.execute(sql("policy_select"), params)
            rows = await cur.fetchall()
        items = [_record(r) for r in rows[:limit]]
        more = len(rows) > limit and items
        return Page(items=tuple(items), next_cursor=encode_cursor(items[-1].id) if more else None)

    async def load_all(self) -> builtins.list[PolicyRecord]:
        params = {"after": None, "namespace": None, "status": None, "tag": None, "limit": None}
        async with translate_errors("load policies"), self._pool.connection() as conn:
            cur = await conn.execute(sql("policy_select"), params)
            return [_record(r) for r in await cur.fetchall()]

    async def revisions(
        self, policy_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[RevisionInfo]:
        limit = max(limit, 0)
        after = int(decode_cursor(cursor, int)[0]) if cursor else 0
        async with translate_errors("read policy revisions"), self._pool.connection() as conn:
            cur = await conn.execute(_REVISIONS, (policy_id, after, limit + 1))
            rows = await cur.fetchall()
            if not rows and after == 0:
                exists = await conn.execute(b"SELECT 1 FROM policies WHERE id = %s", (policy_id,))
                if await exists.fetchone() is None:
                    raise PolicyNotFound(policy_id)
        items = [
            RevisionInfo(revision=r[0], author=r[1], created_at=r[2], hash=r[3], summary=r[4])
            for r in rows[:limit]
        ]
        more = len(rows) > limit and items
        return Page(
            items=tuple(items), next_cursor=encode_cursor(items[-1].revision) if more else None
        )

    # --- writer -------------------------------------------------------------

    async def create(self, revision: NewRevision) -> PolicyRecord:
        now = self._clock.now()
        async with (
            translate_errors("create a policy"),
            self._pool.connection() as conn,
            conn.transaction(),
        ):
            cur = await conn.execute(sql("policy_create"), _params(revision, now))
            row = await cur.fetchone()
            if row is None:
                raise PolicyAlreadyExists(revision.id)
            await _insert_revision(conn, revision, row[0], now)
        return _new_record(revision, row[0], row[1], now)

    async def update(self, revision: NewRevision, expected_revision: int) -> PolicyRecord:
        now = self._clock.now()
        params = _params(revision, now) | {"expected": expected_revision}
        async with (
            translate_errors("update a policy"),
            self._pool.connection() as conn,
            conn.transaction(),
        ):
            cur = await conn.execute(sql("policy_update"), params)
            row = await cur.fetchone()
            if row is None:
                await _explain_miss(conn, revision.id, expected_revision)
            await _insert_revision(conn, revision, row[0], now)
        return _new_record(revision, row[0], row[1], now)

    async def delete(
        self, policy_id: str, *, author: str | None = None, expected_revision: int | None = None
    ) -> None:
        query = b"""
            UPDATE policies SET deleted_at = %(now)s, deleted_by = %(author)s
             WHERE id = %(id)s AND deleted_at IS NULL
               AND (%(expected)s::integer IS NULL OR current_revision = %(expected)s)
            RETURNING id
        """
        params = {
            "now": self._clock.now(),
            "author": author,
            "id": policy_id,
            "expected": expected_revision,
        }
        async with (
            translate_errors("delete a policy"),
            self._pool.connection() as conn,
            conn.transaction(),
        ):
            cur = await conn.execute(query, params)
            if await cur.fetchone() is None:
                await _explain_miss(conn, policy_id, expected_revision)


async def _explain_miss(
    conn: AsyncConnection[Any], policy_id: str, expected: int | None
) -> NoReturn:
    """Raise the error explaining why a conditional write touched no row."""
    cur = await conn.execute(
        b"SELECT current_revision, deleted_at IS NOT NULL FROM policies WHERE id = %s",
        (policy_id,),
    )
    row = await cur.fetchone()
    if row is None or row[1]:
        raise PolicyNotFound(policy_id)
    raise RevisionConflict(policy_id, expected if expected is not None else -1, int(row[0]))


async def _insert_revision(
    conn: AsyncConnection[Any], new: NewRevision, number: int, now: datetime
) -> None:
    params = _params(new, now) | {
        "revision": number,
        "text": new.text,
        "document": Jsonb(new.document, dumps=_dumps),
        "hash": new.hash,
        "author": new.author,
        "summary": new.summary,
    }
    await conn.execute(sql("revision_insert"), params)


def _dumps(value: Any) -> str:
    return _encode.encode(value).decode()


def _params(new: NewRevision, now: datetime) -> dict[str, Any]:
    return {
        "id": new.id,
        "namespace": new.namespace,
        "status": new.status,
        "tags": list(new.tags),
        "now": now,
    }


def _new_record(new: NewRevision, number: int, created: datetime, now: datetime) -> PolicyRecord:
    return PolicyRecord(
        id=new.id,
        namespace=new.namespace,
        revision=number,
        status=new.status,
        document=new.document,
        text=new.text,
        hash=new.hash,
        author=new.author,
        tags=new.tags,
        created_at=created,
        updated_at=now,
    )


def _record(row: Any) -> PolicyRecord:
    return PolicyRecord(
        id=row[0],
        namespace=row[1],
        revision=row[2],
        status=row[3],
        document=_decode_doc.decode(row[4]),
        text=row[5],
        hash=row[6],
        author=row[7],
        tags=tuple(row[8]),
        created_at=row[9],
        updated_at=row[10],
        deleted=bool(row[11]),
    )
