"""Fixtures of the Redis adapter tests: the test server, and a key prefix of its own per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from policy_core.memory import ManualClock
from policy_core.testing import T0
from policy_redis import open_client
from policy_redis.testing import isolated_prefix, usable_redis_url
from redis.asyncio import Redis


@pytest.fixture
async def redis_url() -> str:
    return await usable_redis_url()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis[bytes]]:
    client = await open_client(redis_url)
    try:
        yield client
    finally:
        await client.aclose()  # type: ignore[attr-defined]


@pytest.fixture
async def prefix(client: Redis[bytes]) -> AsyncIterator[str]:
    async with isolated_prefix(client) as name:
        yield name


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)
