"""RedisChangeFeed and RedisDecisionCache beyond the contracts: services, reconnects, isolation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from policy_core.errors import StoreUnavailable
from policy_core.memory import MemoryPolicyStore, SystemClock
from policy_core.model import Decision
from policy_core.ports import PolicyChange
from policy_core.services import EngineHolder, PolicyService
from policy_core.testing import eventually, raises
from policy_redis import RELOAD, RedisChangeFeed, RedisDecisionCache, open_client
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

POLICY = """\
metadata: {id: shared}
rules:
  - id: r
    condition: "user.id == 'bad'"
    action: {decision: deny}
"""


async def test_two_instances_follow_each_other(redis_url: str, prefix: str) -> None:
    store = MemoryPolicyStore(SystemClock())  # the shared truth; Redis only carries the news
    clients = [await open_client(redis_url) for _ in range(2)]
    feeds = [RedisChangeFeed(c, channel=prefix + "changes", owns_client=True) for c in clients]
    a, b = (PolicyService(reader=store, writer=store, holder=EngineHolder(), feed=f) for f in feeds)
    await a.start()
    await b.start()
    try:
        await a.create(POLICY)

        def b_denies() -> bool:
            return b.holder.current.evaluate({"user": {"id": "bad"}}).decision == "deny"

        await eventually(b_denies)
        await b.delete("shared")
        await eventually(lambda: not a.holder.current.policies)
    finally:
        for svc in (a, b):
            await svc.close()
        for feed in feeds:
            await feed.close()


@pytest.mark.parametrize("driver_retries", [False, True], ids=["listener", "redis-py"])
async def test_reconnect_asks_subscribers_to_reload(
    redis_url: str, prefix: str, driver_retries: bool
) -> None:
    """Whoever reconnects (the feed's listener, or redis-py's own retry), subscribers reload."""
    name = f"feed-{uuid.uuid4().hex[:12]}"
    retry: dict[str, Any] = {}
    if driver_retries:
        retry = {"retry": Retry(NoBackoff(), 3), "retry_on_error": [RedisConnectionError]}
    feed_client: Redis[bytes] = Redis.from_url(redis_url, client_name=name, **retry)
    feed = RedisChangeFeed(
        feed_client, channel=prefix + "changes", retry_interval=0.05, owns_client=True
    )
    got: list[PolicyChange] = []

    async def on_change(change: PolicyChange) -> None:
        got.append(change)

    await feed.subscribe(on_change)
    admin = await open_client(redis_url)
    try:
        await admin.publish(prefix + "changes", b"not json")  # ignored, not fatal
        # Drop every connection of the feed's client, as a restart or a network cut would.
        killed = 0
        for info in await admin.client_list():
            if info.get("name") == name:
                killed += await admin.execute_command("CLIENT", "KILL", "ID", info["id"])
        assert killed >= 1
        await eventually(lambda: RELOAD in got)
        assert feed.reconnects == 1
        change = PolicyChange(policy_id="p", revision=2, kind="updated", origin="x")
        await feed.publish(change)
        await eventually(lambda: change in got)
        assert got == [RELOAD, change]
    finally:
        await feed.close()
        await admin.aclose()  # type: ignore[attr-defined]


async def test_cache_values_are_namespaced(client: Redis[bytes], prefix: str) -> None:
    mine = RedisDecisionCache(client, prefix=prefix + "a:")
    other = RedisDecisionCache(client, prefix=prefix + "b:")
    decision = Decision(decision="deny", allowed=False, reason="no", policy_set="sha256:1")
    await mine.set("k", decision, 60)
    await other.set("k", decision, 60)
    assert 0 < await client.ttl(prefix + "a:k") <= 60
    await client.set(prefix + "a:bad", b"\x00garbage")
    assert await mine.get("bad") is None  # undecodable counts as a miss
    await mine.clear()
    assert await mine.get("k") is None
    assert await other.get("k") == decision


async def test_cache_and_feed_outage_is_store_unavailable() -> None:
    dead: Redis[bytes] = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    cache = RedisDecisionCache(dead, owns_client=True)
    feed = RedisChangeFeed(dead)
    try:
        with raises(StoreUnavailable):
            await cache.get("k")
        with raises(StoreUnavailable):
            await feed.publish(PolicyChange(policy_id="p", revision=1, kind="created"))

        async def ignore(change: PolicyChange) -> None:
            pass

        with raises(StoreUnavailable):
            await feed.subscribe(ignore)  # fails at once rather than waiting for Redis
    finally:
        await feed.close()
        await cache.close()
