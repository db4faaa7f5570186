"""Two instances of the cluster deployment (PostgreSQL + Redis) behave as one service.

Each instance is a full `bootstrap()` of its own, as two replicas would run:
they share only the database schema and the Redis namespace. Needs the
PostgreSQL and Redis of LLM_POLICY_TEST_DATABASE_URL / LLM_POLICY_TEST_REDIS_URL
(fails, never skips, when one is missing in CI).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import psycopg
import pytest
from policy_cli.bootstrap import Services, bootstrap
from policy_cli.settings import Settings
from policy_cli.wiring import redis_namespace
from policy_core.services import EvaluationRequest
from policy_core.testing import eventually
from policy_postgres.testing import usable_database_url
from policy_redis import close_client, open_client
from policy_redis.testing import delete_prefix, usable_redis_url

BLOCK_BAD_USERS = """\
metadata: {id: block-bad-users}
config: {cache_ttl_seconds: 60}
rules:
  - id: bad
    condition: "user.id == 'mallory'"
    action: {decision: deny, reason: blocked user}
"""

THREE_PER_HOUR = """\
metadata: {id: three-per-hour}
config: {cache_ttl_seconds: 0}
rules:
  - id: limit
    condition: 'rate_limit.count(user.id, "1h") > 3'
    action: {decision: deny, reason: too many requests}
"""


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[Services, Services]]:
    """Two bootstrapped cluster instances over a fresh schema and Redis namespace."""
    database_url = await usable_database_url()
    redis_url = await usable_redis_url()
    schema = f"cluster_{uuid.uuid4().hex[:12]}"
    settings = [
        Settings(
            deployment="cluster",
            database_url=database_url,
            database_schema=schema,
            redis_url=redis_url,
            data_dir=str(tmp_path / f"replica-{n}"),
            rate_limits="evaluate=3/hour;read=100/hour",
        )
        for n in (1, 2)
    ]
    try:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(bootstrap(settings[0]))
            b = await stack.enter_async_context(bootstrap(settings[1]))
            yield a, b
    finally:
        client = await open_client(redis_url)
        try:
            await delete_prefix(client, redis_namespace(settings[0]))
        finally:
            await close_client(client)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def decide(services: Services, user: str) -> str:
    request = EvaluationRequest(context={"user": {"id": user}})
    return (await services.evaluation.evaluate(request)).decision.decision


async def test_a_policy_written_on_one_replica_is_enforced_by_the_other(
    replicas: tuple[Services, Services],
) -> None:
    a, b = replicas
    assert await decide(b, "mallory") == "allow"
    await a.policies.create(BLOCK_BAD_USERS, author="tester")
    assert await decide(a, "mallory") == "deny"  # the writer, before it answered

    # b reloads on the Redis notification alone: nothing here asks it to.
    def b_enforces() -> bool:
        return bool(b.holder.current.policies)

    await eventually(b_enforces)
    assert await decide(b, "mallory") == "deny"
    assert await decide(b, "alice") == "allow"
    assert await a.ready()
    assert await b.ready()


async def test_the_second_level_cache_is_shared(replicas: tuple[Services, Services]) -> None:
    a, b = replicas
    await a.policies.create(BLOCK_BAD_USERS)
    await eventually(lambda: b.holder.current.policy_set() == a.holder.current.policy_set())
    request = EvaluationRequest(context={"user": {"id": "mallory"}})
    first = await a.evaluation.evaluate(request)
    assert not first.cached
    # b never evaluated this context: its hit can only come from Redis.
    second = await b.evaluation.evaluate(request)
    assert second.cached
    assert second.decision == first.decision


async def test_rate_limits_count_across_replicas(replicas: tuple[Services, Services]) -> None:
    a, b = replicas
    await a.policies.create(THREE_PER_HOUR)
    await eventually(lambda: bool(b.holder.current.policies))
    outcomes = [await decide(instance, "u1") for instance in (a, b, a, b, a)]
    # Requests 1-3 pass whichever replica served them; the 4th and 5th are the 4th and 5th overall.
    assert outcomes == ["allow", "allow", "allow", "deny", "deny"]
    assert await decide(b, "u2") == "allow"  # another key, its own count


async def test_api_rate_limits_are_shared_under_the_deployment_prefix(
    replicas: tuple[Services, Services],
) -> None:
    a, b = replicas
    assert a.rate_limiter is not None
    assert b.rate_limiter is not None
    outcomes = [await x.rate_limiter.hit("evaluate", "api-user") is None for x in (a, b, a, b)]
    assert outcomes == [True, True, True, False]
    # Every counter is a key of this deployment's namespace (llm-policy:<schema>:), none
    # under the `limits` library's default prefix shared by every deployment on the Redis.
    namespace = redis_namespace(a.settings)
    client = await open_client(a.settings.redis_url or "")
    try:
        names = [n.decode() async for n in client.scan_iter(match="*api-user*")]
        assert names
        assert all(n.startswith(namespace + "ratelimit:") for n in names)
        assert not [n async for n in client.scan_iter(match="LIMITS:*api-user*")]
    finally:
        await close_client(client)
