"""20 concurrent updates of one policy on PostgreSQL, each through its own PolicyService and
connection: exactly one wins, 19 get RevisionConflict, revision numbers stay contiguous."""

from __future__ import annotations

import asyncio

import pytest
from policy_core.errors import RevisionConflict
from policy_core.ports import PolicyRecord
from policy_core.services import EngineHolder, PolicyService
from policy_postgres import PostgresPolicyStore
from policy_postgres.testing import isolated_pool, usable_database_url

POLICY = """\
metadata: {id: contested}
rules:
  - id: r
    condition: "user.id == 'x'"
    action: {decision: deny, reason: "version VERSION"}
"""


@pytest.fixture
async def pg_url() -> str:
    return await usable_database_url()


async def test_twenty_concurrent_updates(pg_url: str) -> None:
    async with isolated_pool(pg_url, max_size=21) as (pool, _schema):
        store = PostgresPolicyStore(pool)
        creator = PolicyService(reader=store, writer=store, holder=EngineHolder())
        await creator.start()
        await creator.create(POLICY.replace("VERSION", "0"))
        # Each instance its own service (and lock): only the database arbitrates.
        services = [
            PolicyService(reader=store, writer=store, holder=EngineHolder()) for _ in range(20)
        ]
        for svc in services:
            await svc.start()

        for round_ in range(3):  # again from each new head: one winner per round
            head = (await creator.get("contested")).revision
            results = await asyncio.gather(
                *(attempt(svc, n, head) for n, svc in enumerate(services))
            )
            winners = [r for r in results if isinstance(r, PolicyRecord)]
            conflicts = [r for r in results if isinstance(r, RevisionConflict)]
            assert len(winners) == 1, f"round {round_}"
            assert len(conflicts) == 19
            assert winners[0].revision == head + 1
            assert all(c.expected == head for c in conflicts)

        revisions = [r.revision for r in (await creator.revisions("contested")).items]
        assert revisions == [1, 2, 3, 4]
        assert (await creator.get("contested")).revision == 4


async def attempt(svc: PolicyService, n: int, head: int) -> PolicyRecord | RevisionConflict:
    try:
        return await svc.update(
            "contested", POLICY.replace("VERSION", str(n)), expected_revision=head
        )
    except RevisionConflict as exc:
        return exc
