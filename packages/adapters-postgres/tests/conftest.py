"""Fixtures of the PostgreSQL adapter tests: each test gets a migrated schema of its own."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from policy_postgres.testing import isolated_pool, require_server, test_database_url
from psycopg_pool import AsyncConnectionPool


@pytest.fixture
async def pg_url() -> str:
    url = test_database_url()
    problem = await require_server(url)
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return url


@pytest.fixture
async def pg_pool(pg_url: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    async with isolated_pool(pg_url, max_size=6) as (pool, _schema):
        yield pool
