"""Usage-facts benchmark: one evaluation of a budget (and a rate-limit) policy per store.

Run: `uv run python bench/bench_usage.py [--database-url URL] [--redis-url URL]`.
Measures EvaluationService.evaluate (facts, reservation, release on deny) in one
process, sequentially (p50/p99 per call) and with 32 concurrent callers
(evaluations/s), over the memory store (in process), PostgreSQL (the single
deployment's counters, a schema of its own, dropped after) and Redis (the
cluster's, a key prefix of its own, deleted after). Prints the figures of
docs/benchmarks.md, "Usage facts".
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from policy_core import PolicyEngine, load_policy_text
from policy_core.memory import MemoryUsageStore
from policy_core.services import EngineHolder, EvaluationRequest, EvaluationService

BUDGET = """\
metadata: {id: budget}
rules:
  - id: over-budget
    condition: "budget.spent(user.id, 'day') + llm.estimated_cost > 1000000"
    action: {decision: deny, reason: daily budget exhausted}
"""
RATE = """\
metadata: {id: rate}
rules:
  - id: too-many
    condition: "rate_limit.count(user.id, '1m') > 1000000000"
    action: {decision: deny, reason: rate limited}
"""


async def measure(name: str, usage: Any, text: str, rounds: int) -> None:
    service = EvaluationService(EngineHolder(PolicyEngine(load_policy_text(text))), usage=usage)
    users = [f"u{n}" for n in range(64)]

    def request(n: int) -> EvaluationRequest:
        ctx = {"user": {"id": users[n % 64]}, "llm": {"estimated_cost": 0.001}}
        return EvaluationRequest(context=ctx)

    for n in range(200):
        await service.evaluate(request(n))
    samples = []
    for n in range(rounds):
        t0 = time.perf_counter_ns()
        await service.evaluate(request(n))
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    p50 = samples[len(samples) // 2] / 1000
    p99 = samples[int(len(samples) * 0.99)] / 1000
    total, callers = rounds, 32
    t0 = time.perf_counter()

    async def caller(k: int) -> None:
        for n in range(k, total, callers):
            await service.evaluate(request(n))

    await asyncio.gather(*(caller(k) for k in range(callers)))
    rate = total / (time.perf_counter() - t0)
    print(
        f"{name:<10} {text.split()[2].rstrip('}'):<7} p50 {p50:8.1f} us  p99 {p99:8.1f} us"
        f"  mean {statistics.fmean(samples) / 1000:8.1f} us  32 callers {rate:8.0f}/s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    for text in (BUDGET, RATE):
        await measure("memory", MemoryUsageStore(), text, args.rounds)

    import psycopg
    from policy_postgres import PostgresUsageStore, migrate, open_pool

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(args.database_url, autocommit=True) as c:
        await c.execute(f'CREATE SCHEMA "{schema}"')
    try:
        pool = await open_pool(
            args.database_url,
            schema=schema,
            max_size=8,
            check=False,
            parameters={"synchronous_commit": "off"},  # as the single deployment's usage pool
        )
        async with pool.connection() as conn:
            await migrate(conn)
        for text in (BUDGET, RATE):
            await measure("postgresql", PostgresUsageStore(pool), text, args.rounds)
        await pool.close()
    finally:
        async with await psycopg.AsyncConnection.connect(args.database_url, autocommit=True) as c:
            await c.execute(f'DROP SCHEMA "{schema}" CASCADE')

    from policy_redis import RedisUsageStore, close_client, open_client
    from policy_redis.testing import delete_prefix

    client = await open_client(args.redis_url)
    prefix = f"bench-usage-{uuid.uuid4().hex[:8]}:"
    try:
        for text in (BUDGET, RATE):
            await measure("redis", RedisUsageStore(client, prefix=prefix), text, args.rounds)
    finally:
        await delete_prefix(client, prefix)
        await close_client(client)


if __name__ == "__main__":
    asyncio.run(main())
