"""Fixtures of the PostgreSQL adapter tests: each test gets a migrated schema of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from policy_postgres.testing import isolated_pool, usable_database_url
from psycopg_pool import AsyncConnectionPool


@pytest.fixture
async def pg_url() -> str:
    return await usable_database_url()


@pytest.fixture
async def pg_pool(pg_url: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    async with isolated_pool(pg_url, max_size=6) as (pool, _schema):
        yield pool
