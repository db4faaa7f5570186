"""Usage counters and budget reservations are exact across processes (issue 14, spec 7.3).

Real servers, as subprocesses on 127.0.0.1: `llm-policy serve --workers 4`
(single: PostgreSQL) and two `serve --workers 2` replicas (cluster:
PostgreSQL + Redis), each run on a fresh schema / Redis namespace of its own,
dropped afterwards. Concurrent requests come from one aiohttp client with a
connection per request, so the kernel spreads them over the workers.
Needs the PostgreSQL and Redis of LLM_POLICY_TEST_DATABASE_URL /
LLM_POLICY_TEST_REDIS_URL (fails, never skips, when one is missing in CI).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from policy_cli.testing import clean_env, free_port, llm_policy, serving

ROOT = Path(__file__).resolve().parents[1]
SECRET = "usage-exact-test-secret"
DATABASE = os.environ.get(
    "LLM_POLICY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("LLM_POLICY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

BUDGET = """\
metadata: {id: ten-dollars}
rules:
  - id: over-budget
    condition: "budget.spent(user.id, 'day') + llm.estimated_cost > 10"
    action: {decision: deny, reason: daily budget exhausted}
"""

RATE = """\
metadata: {id: hundred-a-minute}
rules:
  - id: too-many
    condition: "rate_limit.count(user.id, '1m') > 100"
    action: {decision: deny, reason: rate limited}
"""


def _require_services(redis: bool) -> None:
    problems = []
    try:
        psycopg.connect(DATABASE, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        problems.append(f"PostgreSQL at {DATABASE}: {exc}")
    if redis:
        import redis as redis_sync

        try:
            redis_sync.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
        except Exception as exc:
            problems.append(f"Redis at {REDIS}: {exc}")
    if problems:
        if os.environ.get("CI") == "true":
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))


@contextmanager
def deployment_schema(redis: bool) -> Iterator[str]:
    """A schema name of this test alone; dropped (and its Redis namespace deleted) at the end."""
    _require_services(redis)
    schema = f"usage_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        with psycopg.connect(DATABASE, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if redis:
            import redis as redis_sync

            client = redis_sync.Redis.from_url(REDIS)
            names = list(client.scan_iter(match=f"llm-policy:{schema}:*", count=1000))
            if names:
                client.delete(*names)
            client.close()


def _token() -> str:
    out = subprocess.run(
        llm_policy("token"),
        env=clean_env(LLM_POLICY_JWT_SECRET=SECRET),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    return out.stdout.strip()


def _server_env(schema: str, data: Path, port: int, *, cluster: bool) -> dict[str, str]:
    env = clean_env(
        LLM_POLICY_JWT_SECRET=SECRET,
        LLM_POLICY_DATABASE_URL=DATABASE,
        LLM_POLICY_DATABASE_SCHEMA=schema,
        LLM_POLICY_DATA_DIR=str(data),
        LLM_POLICY_PORT=str(port),
    )
    if cluster:
        env.update(LLM_POLICY_DEPLOYMENT="cluster", LLM_POLICY_REDIS_URL=REDIS)
    return env


@contextmanager
def servers(
    tmp: Path, schema: str, seed: Path, *, replicas: int, workers: int, cluster: bool
) -> Iterator[list[str]]:
    """`replicas` servers of `workers` workers each on one schema; yields their URLs."""
    with ExitStack() as stack:
        urls = []
        for n in range(replicas):
            port = free_port()
            env = _server_env(schema, tmp / f"data-{n}", port, cluster=cluster)
            command = llm_policy("serve", "--workers", str(workers), "--seed", str(seed))
            srv = stack.enter_context(
                serving(
                    command,
                    port=port,
                    env=env,
                    log=tmp / f"server-{n}-{uuid.uuid4().hex[:6]}.log",
                    cwd=ROOT,
                    timeout=240,
                )
            )
            urls.append(srv.url)
        yield urls


def _seed(tmp: Path, text: str) -> Path:
    seed = tmp / "seed"
    seed.mkdir(exist_ok=True)
    (seed / "policy.yaml").write_text(text)
    return seed


async def _evaluate_all(urls: list[str], token: str, contexts: list[dict[str, Any]]) -> list[Any]:
    """Every context at once, spread over `urls`, each on a connection of its own."""
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout
    ) as session:

        async def one(i: int, context: dict[str, Any]) -> Any:
            url = urls[i % len(urls)] + "/api/v1/evaluate"
            async with session.post(url, json={"context": context}) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

        return await asyncio.gather(*(one(i, c) for i, c in enumerate(contexts)))


async def _settle(url: str, token: str, reservation: str, usd: float) -> Any:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.post(url + "/api/v1/usage", json={"reservation": reservation, "usd": usd}) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.json()


def _budget_scenario(urls: list[str]) -> None:
    token = _token()
    one_dollar = {"user": {"id": "u1"}, "llm": {"estimated_cost": 1.0}}
    first = asyncio.run(_evaluate_all(urls, token, [one_dollar] * 40))
    allowed = [d for d in first if d["allowed"]]
    assert len(allowed) == 10, [d["decision"] for d in first]
    assert all(d["reservation"]["amount"] == 1.0 for d in allowed)
    assert all(d["reservation"] is None for d in first if not d["allowed"])
    for n, d in enumerate(allowed):
        settled = asyncio.run(_settle(urls[n % len(urls)], token, d["reservation"]["id"], 0.5))
        assert settled["keys"] == ["u1"]
    # $5 settled, nothing held: $5 are left, i.e. exactly ten requests of $0.50.
    half = {"user": {"id": "u1"}, "llm": {"estimated_cost": 0.5}}
    second = asyncio.run(_evaluate_all(urls, token, [half] * 40))
    assert sum(d["allowed"] for d in second) == 10, [d["decision"] for d in second]


def test_single_node_four_workers_admit_exactly_ten_dollars(tmp_path: Path) -> None:
    with (
        deployment_schema(redis=False) as schema,
        servers(
            tmp_path, schema, _seed(tmp_path, BUDGET), replicas=1, workers=4, cluster=False
        ) as urls,
    ):
        _budget_scenario(urls)


def test_cluster_two_replicas_of_two_workers_admit_exactly_ten_dollars(tmp_path: Path) -> None:
    with (
        deployment_schema(redis=True) as schema,
        servers(
            tmp_path, schema, _seed(tmp_path, BUDGET), replicas=2, workers=2, cluster=True
        ) as urls,
    ):
        _budget_scenario(urls)


def test_rate_limit_of_100_with_four_workers_admits_exactly_100_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    seed = _seed(tmp_path, RATE)
    context = {"user": {"id": "u1"}}
    with deployment_schema(redis=False) as schema:
        token = _token()
        with servers(tmp_path, schema, seed, replicas=1, workers=4, cluster=False) as urls:
            decisions = asyncio.run(_evaluate_all(urls, token, [context] * 400))
            assert sum(d["allowed"] for d in decisions) == 100
        # A new server on the same database: the minute's 400 requests are still counted.
        with servers(tmp_path, schema, seed, replicas=1, workers=4, cluster=False) as urls:
            after = asyncio.run(_evaluate_all(urls, token, [context] * 3))
            assert [d["decision"] for d in after] == ["deny"] * 3
            other = asyncio.run(_evaluate_all(urls, token, [{"user": {"id": "u2"}}]))
            assert other[0]["decision"] == "allow"
