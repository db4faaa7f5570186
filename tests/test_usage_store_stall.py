"""The PostgreSQL usage counters under a stalled network: an evaluation waits a bounded time.

Found by `make reliability` (reliability/faults.py): with PostgreSQL down or the network to
it stalled, `PostgresUsageStore.fetch` waited for the pool (10 s) or for ever, and so did
every evaluation of a policy using `budget.spent` or `rate_limit.count`. It now gives up
after its timeout with StoreUnavailable, and the rules fail per their policy's fail mode.
The stall comes from the suite's proxy (reliability/tcp_proxy.py) in front of the shared
test PostgreSQL, which itself is never stopped.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from policy_core import PolicyEngine, StoreUnavailable, load_policy_text
from policy_postgres import PostgresUsageStore
from policy_postgres.testing import isolated_pool, usable_database_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from tcp_proxy import StallProxy

BUDGET = """\
metadata: {id: budget}
config: {fail_open: true}
rules:
  - id: over
    condition: 'budget.spent("team:t1", "day") > 10'
    action: {decision: deny, reason: over budget}
"""
FACT = ("budget.spent", "team:t1", "day")


async def test_a_stalled_network_bounds_the_wait_and_the_policy_fails_open() -> None:
    url = await usable_database_url()
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    port = int(host_port.rsplit(":", 1)[1]) if ":" in host_port else 5432
    proxy = StallProxy("127.0.0.1", port)
    await proxy.start()
    proxied = url.replace(host_port, f"127.0.0.1:{proxy.listen_port}")
    try:
        async with isolated_pool(proxied) as (pool, _):
            store = PostgresUsageStore(pool, timeout=0.5)
            await store.record_spend("team:t1", 20.0)
            assert (await store.fetch([FACT]))[FACT] == 20.0
            engine = PolicyEngine(load_policy_text(BUDGET))
            ctx = {"team": {"id": "t1"}}
            assert (await engine.evaluate_async(ctx, usage=store)).decision == "deny"

            proxy.pause()
            async with asyncio.timeout(30):  # a hang guard only: the store's bound is 0.5 s
                with pytest.raises(StoreUnavailable, match=r"within 0\.5 s"):
                    await store.fetch([FACT])
                decision = await engine.evaluate_async(ctx, usage=store)
            assert decision.decision == "allow"  # fail_open: the rule is not matched
            assert decision.errors

            proxy.resume()
            await proxy.drop()  # the stalled connections are gone; the pool makes new ones
            for _ in range(20):
                try:
                    assert (await store.fetch([FACT]))[FACT] == 20.0
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.2)
            else:
                raise AssertionError("the store did not come back after the stall")
    finally:
        await proxy.close()
