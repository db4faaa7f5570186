"""Closing clients and pub/sub objects with redis-py's `aclose`.

The type stubs the workspace pins (types-redis) predate redis-py 5, which
added `aclose` and deprecated `close` (a DeprecationWarning, so an error in
the tests); the ignores below are for those stubs only.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

__all__ = ["close_client", "close_pubsub"]


async def close_client(client: Redis[Any]) -> None:
    """Close `client` and its connection pool."""
    await client.aclose()  # type: ignore[attr-defined]


async def close_pubsub(pubsub: PubSub) -> None:
    """Unsubscribe and give the pub/sub connection back."""
    await pubsub.aclose()  # type: ignore[attr-defined]
