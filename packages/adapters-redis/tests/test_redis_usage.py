"""RedisUsageStore beyond the contract: replicas counting together, one round trip, outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from policy_core.errors import StoreUnavailable
from policy_core.testing import raises
from policy_redis import RedisUsageStore, open_client
from redis.asyncio import Redis


class CountingRedis(Redis):  # type: ignore[type-arg]
    """A client that counts the commands it sends (a script call is one)."""

    commands: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return await super().execute_command(*args, **options)


async def test_two_replicas_count_exactly(redis_url: str, prefix: str) -> None:
    # Two clients, so two connections: what two replicas would have.
    clients = [await open_client(redis_url) for _ in range(2)]
    try:
        replicas = [RedisUsageStore(c, prefix=prefix) for c in clients]  # server clock
        req = ("rate_limit.count", "tenant:1", "1h")
        per_replica = 60

        async def hammer(store: RedisUsageStore) -> list[int]:
            return [(await store.fetch([req, req]))[req] for _ in range(per_replica)]

        seen = await asyncio.gather(*(hammer(s) for s in replicas))
        counts = sorted(n for one in seen for n in one)
        # Each request was counted once and saw a distinct total: no lost or doubled update.
        assert counts == list(range(1, 2 * per_replica + 1))
        assert await replicas[0].fetch([req], record=False) == {req: 2 * per_replica + 1}
    finally:
        for c in clients:
            await c.aclose()  # type: ignore[attr-defined]


async def test_every_fact_in_one_round_trip(redis_url: str, prefix: str) -> None:
    client = CountingRedis.from_url(redis_url)
    client.commands = []
    try:
        store = RedisUsageStore(client, prefix=prefix)
        await store.fetch([("rate_limit.count", "warm", "1m")])  # loads the script
        client.commands.clear()
        facts = [
            ("rate_limit.count", "u1", "1m"),
            ("rate_limit.count", "u1", "1d"),
            ("rate_limit.count", "u2", "10s"),
            ("budget.spent", "team:a", "day"),
            ("budget.spent", "team:a", "month"),
        ]
        got = await store.fetch(facts)
        assert client.commands == ["EVALSHA"]
        assert got == dict(zip(facts, [1, 1, 1, 0.0, 0.0], strict=True))
    finally:
        await client.aclose()


async def test_bad_windows_and_periods_are_left_out(client: Redis[bytes], prefix: str) -> None:
    store = RedisUsageStore(client, prefix=prefix)
    good = ("rate_limit.count", "u", "1m")
    bad = [("rate_limit.count", "u", "1 minute"), ("budget.spent", "u", "week"), ("shield.scan",)]
    assert await store.fetch([good, *bad]) == {good: 1}


async def test_counters_expire_on_their_own(client: Redis[bytes], prefix: str) -> None:
    store = RedisUsageStore(client, prefix=prefix)
    await store.fetch([("rate_limit.count", "u", "1m"), ("rate_limit.count", "u", "1h")])
    await store.record_spend("team", 2.5)
    names = [name async for name in client.scan_iter(match=prefix + "*")]
    assert len(names) == 4  # hits, horizon, day and month spend
    ttls = [await client.ttl(name) for name in names]
    assert all(ttl > 0 for ttl in ttls)
    # The hit set lives as long as its longest window (plus a second), no longer.
    assert await client.pttl(prefix + "hits:u") <= 3_601_000


async def test_dry_run_records_nothing(client: Redis[bytes], prefix: str) -> None:
    store = RedisUsageStore(client, prefix=prefix)
    req = ("rate_limit.count", "u", "1m")
    assert await store.fetch([req], record=False) == {req: 1}
    assert [name async for name in client.scan_iter(match=prefix + "*")] == []


async def test_spend_adds_up(client: Redis[bytes], prefix: str) -> None:
    store = RedisUsageStore(client, prefix=prefix)
    await asyncio.gather(*(store.record_spend("team", 0.25) for _ in range(8)))
    day = ("budget.spent", "team", "day")
    assert await store.fetch([day]) == {day: 2.0}


@pytest.fixture
async def dead_client() -> AsyncIterator[Redis[bytes]]:
    # Nothing listens on port 1: every command fails to connect.
    client: Redis[bytes] = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    yield client
    await client.aclose()  # type: ignore[attr-defined]


async def test_outage_is_store_unavailable(dead_client: Redis[bytes]) -> None:
    store = RedisUsageStore(dead_client, prefix="x:")
    with raises(StoreUnavailable) as caught:
        await store.fetch([("rate_limit.count", "u", "1m")])
    assert "Redis is unavailable" in str(caught[0])
    with raises(StoreUnavailable):
        await store.record_spend("team", 1.0)
    with raises(StoreUnavailable) as refused:
        await open_client("redis://:secret@127.0.0.1:1/0", socket_timeout=1)
    assert "secret" not in str(refused[0])  # the URL's password is never echoed
