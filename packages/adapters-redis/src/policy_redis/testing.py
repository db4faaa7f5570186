"""Test support: the test Redis, and a key prefix of its own per test, cleaned up afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from policy_redis._close import close_client

__all__ = [
    "DEFAULT_TEST_URL",
    "delete_prefix",
    "isolated_prefix",
    "redis_url",
    "usable_redis_url",
]

DEFAULT_TEST_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    """LLM_POLICY_TEST_REDIS_URL, or the local server's database 0."""
    return os.environ.get("LLM_POLICY_TEST_REDIS_URL", DEFAULT_TEST_URL)


async def usable_redis_url() -> str:
    """The test Redis URL; skips the calling test when the server is missing, or fails
    it when CI=true (a CI run must never silently skip the Redis suites)."""
    import pytest

    url = redis_url()
    client: Redis[bytes] = Redis.from_url(url, socket_connect_timeout=3)
    try:
        await client.ping()
    except Exception as exc:
        problem = f"Redis at {url} is not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    finally:
        await close_client(client)
    return url


async def delete_prefix(client: Redis[bytes], prefix: str) -> int:
    """Delete every key starting with `prefix` (which holds no glob character); how many."""
    names = [name async for name in client.scan_iter(match=prefix + "*", count=500)]
    if names:
        await client.unlink(*names)
    return len(names)


@asynccontextmanager
async def isolated_prefix(client: Redis[bytes]) -> AsyncIterator[str]:
    """A fresh `test:<hex>:` key prefix, its keys deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        await delete_prefix(client, prefix)
