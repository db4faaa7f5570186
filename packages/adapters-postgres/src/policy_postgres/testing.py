"""Test support: a migrated schema of its own per test, dropped afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from policy_postgres.migrations import migrate
from policy_postgres.pool import open_pool

__all__ = [
    "DEFAULT_TEST_URL",
    "database_url",
    "embedded_data_dir",
    "isolated_pool",
    "require_server",
    "usable_database_url",
]

DEFAULT_TEST_URL = "postgresql://postgres@127.0.0.1:5432/test"


def database_url() -> str:
    """LLM_POLICY_TEST_DATABASE_URL, or the local server's `test` database."""
    return os.environ.get("LLM_POLICY_TEST_DATABASE_URL", DEFAULT_TEST_URL)


async def require_server(url: str) -> str | None:
    """None when the server answers, else why not (the caller skips, or fails in CI)."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=3)
    except psycopg.Error as exc:
        return f"PostgreSQL at {url} is not reachable: {exc}"
    await conn.close()
    return None


async def usable_database_url() -> str:
    """The test database URL; skips the calling test when the server is missing, or fails
    it when CI=true (a CI run must never silently skip the PostgreSQL suites)."""
    import pytest

    url = database_url()
    problem = await require_server(url)
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return url


@asynccontextmanager
async def isolated_pool(
    url: str, *, migrated: bool = True, max_size: int = 4
) -> AsyncIterator[tuple[AsyncConnectionPool[Any], str]]:
    """A pool whose search_path is a fresh schema (migrated unless told not to); yields (pool, schema)."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        pool = await open_pool(url, schema=schema, max_size=max_size, name=schema)
        try:
            if migrated:
                async with pool.connection() as conn:
                    await migrate(conn)
            yield pool, schema
        finally:
            await pool.close()
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def embedded_data_dir() -> Iterator[Path]:
    """A temp dir for an embedded server, outside pytest's tmp tree (whose permissions
    pytest resets while a test runs), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="llm-policy-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
