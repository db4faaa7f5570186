"""HTTP benchmark of stateful facts: `llm-policy serve` (single, PostgreSQL) with a budget policy.

Run: `uv run python bench/bench_http_usage.py [--workers 2] [--requests 4000]`.
Starts `llm-policy serve` on 127.0.0.1 over a schema of its own (dropped
after) with one policy (a budget, a rate limit, or the reference policies),
then sends POST /api/v1/evaluate from an aiohttp client with 32 requests in
flight on kept-alive connections (wrk is not installed on the project VM) and
prints decisions/s and the client-side p50/p99. `--server-python` measures
another checkout's environment (before/after with the same load generator).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import psycopg
from policy_cli.testing import clean_env, free_port, serving

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-http-usage-secret"
POLICIES = {
    "budget": """\
metadata: {id: budget}
rules:
  - id: over-budget
    condition: "budget.spent(user.id, 'day') + llm.estimated_cost > 1000000"
    action: {decision: deny, reason: daily budget exhausted}
""",
    "rate": """\
metadata: {id: rate}
rules:
  - id: too-many
    condition: "rate_limit.count(user.id, '1m') > 1000000000"
    action: {decision: deny, reason: rate limited}
""",
}


async def load(url: str, token: str, total: int, inflight: int) -> tuple[float, list[float]]:
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker(k: int) -> None:
            for n in range(k, total, inflight):
                body = {"context": {"user": {"id": f"u{n % 64}"}, "llm": {"estimated_cost": 1e-3}}}
                t0 = time.perf_counter()
                async with session.post(url + "/api/v1/evaluate", json=body) as resp:
                    await resp.read()
                    assert resp.status == 200
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker(k) for k in range(inflight)))  # warm-up
        latencies.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(inflight)))
        return total / (time.perf_counter() - t0), sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--policy", choices=sorted(POLICIES), default="budget")
    parser.add_argument("--server-python", default=None)
    args = parser.parse_args()
    python = args.server_python or os.environ.get("PYTHON", "python")
    token = subprocess.run(
        [python, "-m", "policy_cli", "token"],
        env=clean_env(LLM_POLICY_JWT_SECRET=SECRET),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as tmp:
        seed = Path(tmp) / "seed"
        seed.mkdir()
        (seed / "policy.yaml").write_text(POLICIES[args.policy])
        port = free_port()
        env = clean_env(
            LLM_POLICY_JWT_SECRET=SECRET,
            LLM_POLICY_DATABASE_URL=args.database_url,
            LLM_POLICY_DATABASE_SCHEMA=schema,
            LLM_POLICY_DATA_DIR=str(Path(tmp) / "data"),
            LLM_POLICY_PORT=str(port),
        )
        command = [python, "-m", "policy_cli", "serve", "--workers", str(args.workers)]
        command += ["--seed", str(seed)]
        try:
            with serving(
                command, port=port, env=env, log=Path(tmp) / "server.log", cwd=ROOT
            ) as srv:
                rate, lat = asyncio.run(load(srv.url, token, args.requests, 32))
        finally:
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000
    print(
        f"{args.policy} workers={args.workers}: {rate:,.0f} decisions/s "
        f"p50 {p50:.2f} ms p99 {p99:.2f} ms"
    )


if __name__ == "__main__":
    main()
