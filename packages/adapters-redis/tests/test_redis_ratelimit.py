"""RedisRateLimiter: counters under the given prefix, shared by every limiter on it."""

from __future__ import annotations

import pytest
from limits.errors import ConcurrentUpdateError, StorageError
from policy_core.errors import StoreUnavailable
from policy_core.ratelimits import parse_rate_limits
from policy_redis import RedisRateLimiter
from redis.asyncio import Redis


async def test_keys_live_under_the_prefix_only(client: Redis[bytes], prefix: str) -> None:
    limiter = RedisRateLimiter(
        client, parse_rate_limits("read=5/day"), prefix=prefix + "ratelimit:"
    )
    assert await limiter.hit("read", "prefix-owner") is None
    names = [n.decode() async for n in client.scan_iter(match="*prefix-owner*")]
    assert names
    assert all(n.startswith(prefix + "ratelimit:") for n in names)
    assert not [n async for n in client.scan_iter(match="LIMITS:*prefix-owner*")]


async def test_two_limiters_on_one_prefix_share_the_window(
    client: Redis[bytes], prefix: str
) -> None:
    limits = parse_rate_limits("evaluate=3/day")
    a = RedisRateLimiter(client, limits, prefix=prefix)
    b = RedisRateLimiter(client, limits, prefix=prefix)
    other = RedisRateLimiter(client, limits, prefix=prefix + "other-deployment:")
    outcomes = [await x.hit("evaluate", "u") is None for x in (a, b, a, b)]
    assert outcomes == [True, True, True, False]
    assert await other.hit("evaluate", "u") is None  # another prefix shares nothing


async def test_an_unreachable_redis_is_store_unavailable() -> None:
    # Nothing listens on port 1 of the loopback: every command fails to connect.
    client: Redis[bytes] = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    limiter = RedisRateLimiter(client, parse_rate_limits("read=5/day"), prefix="test:down:")
    try:
        with pytest.raises(StoreUnavailable, match="rate limits"):
            await limiter.hit("read", "u")
        assert await limiter.ping() is False
    finally:
        await client.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "error",
    [StorageError(ConnectionError("lost")), ConcurrentUpdateError("k", 3), RuntimeError("x")],
    ids=["limits StorageError", "limits ConcurrentUpdateError", "other"],
)
async def test_a_non_redis_error_of_the_limiter_is_store_unavailable(
    error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (make reliability, cluster, Redis stopped): an error of the `limits`
    # library that is no RedisError escaped the mapping, and a write answered 500.
    client: Redis[bytes] = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    limiter = RedisRateLimiter(client, parse_rate_limits("admin=5/day"), prefix="test:down:")

    async def failing(*args: object, **kwargs: object) -> bool:
        raise error

    monkeypatch.setattr(limiter._limiter, "hit", failing)
    try:
        with pytest.raises(StoreUnavailable, match="rate limits") as raised:
            await limiter.hit("admin", "u")
        assert raised.value.__cause__ is error
        assert await limiter.hit("no-such-class", "u") is None  # nothing to count: no Redis
    finally:
        await client.aclose()  # type: ignore[attr-defined]
