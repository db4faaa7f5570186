"""PostgresChangeFeed beyond the contract: services following each other, reconnects."""

from __future__ import annotations

import uuid
from typing import Any

from policy_core.ports import PolicyChange
from policy_core.services import EngineHolder, PolicyService
from policy_core.testing import eventually
from policy_postgres import PostgresChangeFeed, PostgresPolicyStore
from policy_postgres.feed import RELOAD
from psycopg_pool import AsyncConnectionPool

POLICY = """\
metadata: {id: shared}
rules:
  - id: r
    condition: "user.id == 'bad'"
    action: {decision: deny}
"""


async def test_two_instances_follow_each_other(pg_pool: AsyncConnectionPool[Any]) -> None:
    channel = f"test_{uuid.uuid4().hex}"
    store = PostgresPolicyStore(pg_pool)
    feeds = [PostgresChangeFeed(pg_pool, channel=channel) for _ in range(2)]
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


async def test_reconnect_asks_subscribers_to_reload(pg_pool: AsyncConnectionPool[Any]) -> None:
    channel = f"test_{uuid.uuid4().hex}"
    feed = PostgresChangeFeed(pg_pool, channel=channel, retry_interval=0.05)
    got: list[PolicyChange] = []

    async def on_change(change: PolicyChange) -> None:
        got.append(change)

    await feed.subscribe(on_change)
    try:
        async with pg_pool.connection() as conn:
            # Only this test's listener: its query names the test's own channel.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query = %s AND pid <> pg_backend_pid()",
                (f'LISTEN "{channel}"',),
            )
            await conn.execute("SELECT pg_notify(%s, 'not json')", (channel,))
        await eventually(lambda: RELOAD in got)
        assert feed.reconnects == 1
        change = PolicyChange(policy_id="p", revision=2, kind="updated", origin="x")
        await feed.publish(change)
        await eventually(lambda: change in got)
    finally:
        await feed.close()
