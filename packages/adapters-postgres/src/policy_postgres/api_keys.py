"""PostgresApiKeyStore: service API keys (prefix + hash, never the key)."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

import psycopg
from policy_core.ports import ApiKeyRecord
from psycopg_pool import AsyncConnectionPool

from policy_postgres.errors import translate_errors

__all__ = ["PostgresApiKeyStore"]

_COLUMNS = b"id, name, prefix, key_hash, roles, created_at, revoked_at"


class PostgresApiKeyStore:
    """An ApiKeyStore on the `api_keys` table; the pool is the caller's unless `owns_pool`."""

    def __init__(self, pool: AsyncConnectionPool[Any], *, owns_pool: bool = False) -> None:
        self._pool = pool
        self.owns_pool = owns_pool

    async def close(self) -> None:
        if self.owns_pool:
            await self._pool.close()

    async def create(self, record: ApiKeyRecord) -> None:
        query = b"INSERT INTO api_keys (" + _COLUMNS + b") VALUES (%s, %s, %s, %s, %s, %s, %s)"
        params = (
            record.id,
            record.name,
            record.prefix,
            record.key_hash,
            list(record.roles),
            record.created_at,
            record.revoked_at,
        )
        try:
            async with translate_errors("store an API key"), self._pool.connection() as conn:
                await conn.execute(query, params)
        except psycopg.errors.UniqueViolation as exc:
            raise ValueError(f"API key id {record.id!r} or its prefix already exists") from exc

    async def get_by_prefix(self, prefix: str) -> ApiKeyRecord | None:
        query = b"SELECT " + _COLUMNS + b" FROM api_keys WHERE prefix = %s"
        async with translate_errors("read an API key"), self._pool.connection() as conn:
            cur = await conn.execute(query, (prefix,))
            row = await cur.fetchone()
        return _record(row) if row is not None else None

    async def list(self, *, include_revoked: bool = False) -> builtins.list[ApiKeyRecord]:
        query = (
            b"SELECT "
            + _COLUMNS
            + b" FROM api_keys WHERE %s OR revoked_at IS NULL ORDER BY created_at, id"
        )
        async with translate_errors("list API keys"), self._pool.connection() as conn:
            cur = await conn.execute(query, (include_revoked,))
            return [_record(r) for r in await cur.fetchall()]

    async def revoke(self, key_id: str, at: datetime) -> bool:
        query = (
            b"UPDATE api_keys SET revoked_at = coalesce(revoked_at, %s) WHERE id = %s RETURNING id"
        )
        async with translate_errors("revoke an API key"), self._pool.connection() as conn:
            cur = await conn.execute(query, (at, key_id))
            return await cur.fetchone() is not None


def _record(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row[0],
        name=row[1],
        prefix=row[2],
        key_hash=row[3],
        roles=tuple(row[4]),
        created_at=row[5],
        revoked_at=row[6],
    )
