"""A change of one policy in a running server with 10,000 rules applied (issue 16).

    uv run --frozen python bench/bench_scale_reload.py                      # memory and single
    uv run --frozen python bench/bench_scale_reload.py --deployment memory --rules 1000

`llm-policy serve` (one worker) is started and seeded with the scale workload
of bench/scale_rules.py: `--rules` rules in `--policies` policies (10,000 in
100 by default). Then, `--changes` times, one policy is replaced over the HTTP
API (`PUT /api/v1/policies/{id}`, its text with a probe rule added or taken
out again) and a probe request (`POST /api/v1/evaluate`, which only that rule
denies) is sent until it shows the change. Per change it records:

- write: the PUT's latency (parse, validate, compile, store, swap, answer);
- serving: from sending the PUT until the probe's answer shows the change
  (new engine serving).

(Other instances learn of a change through the change feed, which only the
cluster deployment has, over Redis; it is not measured here.)

`--deployment single` runs on PostgreSQL (`--database-url`, by default the
local test database) in a schema of its own, dropped afterwards, decision log
on. Figures (median and max over the changes, ms) go to stdout as a Markdown
table; docs/benchmarks.md ("Scale") records them. No figure is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from policy_cli.testing import clean_env, free_port, llm_policy, serving

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale_rules  # noqa: E402 - bench/ is not a package

SECRET = "bench-secret-0123456789-abcdefghijklmnop"
SCHEMA = f"bench_reload_{os.getpid()}"
PROBE_RULE = (
    "  - id: bench-probe\n"
    "    condition: 'request.id == \"bench-probe\"'\n"
    "    action: {decision: deny, reason: probe}\n"
)
PROBE = {
    "context": {
        "llm": {"model": "bench-probe-model", "prompt": "hello", "max_tokens": 10},
        "user": {"id": "probe", "roles": ["llm-user"]},
        "team": {"id": "team-probe", "tier": "pro"},
        "project": {"id": "proj-probe"},
        "request": {"id": "bench-probe"},
    }
}


def _token() -> str:
    from policy_core.auth import mint_token

    return mint_token(SECRET, subject="bench", roles=["admin"], ttl_seconds=3600)


class Client:
    """One keep-alive HTTP/1.1 connection to a server."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.auth = {"Authorization": f"Bearer {_token()}"}

    def request(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, body=body, headers={**self.auth, **headers})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def decision(self) -> str:
        status, _, data = self.request(
            "POST",
            "/api/v1/evaluate",
            json.dumps(PROBE).encode(),
            **{"Content-Type": "application/json"},
        )
        assert status == 200, (status, data[:300])
        return str(json.loads(data)["decision"])


def _environment(deployment: str, data_dir: str, database_url: str | None) -> dict[str, str]:
    env = clean_env(
        LLM_POLICY_DEPLOYMENT=deployment,
        LLM_POLICY_DATA_DIR=data_dir,
        LLM_POLICY_JWT_SECRET=SECRET,
        LLM_POLICY_LOG_LEVEL="warning",
        LLM_POLICY_RATE_LIMITS="",  # empty: no limit (the bench polls the probe)
    )
    if database_url is not None:
        env |= {"LLM_POLICY_DATABASE_URL": database_url, "LLM_POLICY_DATABASE_SCHEMA": SCHEMA}
    return env


@contextmanager
def _schema(database_url: str | None) -> Iterator[None]:
    try:
        yield
    finally:
        if database_url is not None:
            import psycopg

            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')  # our own name


def run(
    deployment: str, rules: int, policies: int, changes: int, database_url: str | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        seed = Path(tmp) / "seed"
        seed.mkdir()
        texts = scale_rules.policy_texts(rules, policies)
        for k, text in enumerate(texts):
            (seed / f"scale-{k:04d}.yaml").write_text(text)
        stack.enter_context(_schema(database_url))
        env = _environment(deployment, str(Path(tmp) / "data"), database_url)
        started = time.perf_counter()
        port = free_port()
        args = ["serve", "--port", str(port), "--workers", "1", "--seed", str(seed)]
        log = Path(tmp) / "server.log"
        server = stack.enter_context(
            serving(llm_policy(*args), port=port, env=env, log=log, timeout=1800)
        )
        seeded_s = time.perf_counter() - started
        writer, probe = Client(server.url), Client(server.url)
        target = f"scale-{policies // 2}"
        base = texts[policies // 2]
        assert probe.decision() != "deny"
        writes, serving_ms = [], []
        for n in range(changes):
            status, headers, _ = writer.request("GET", f"/api/v1/policies/{target}")
            assert status == 200, status
            text = base + PROBE_RULE if n % 2 == 0 else base
            want = "deny" if n % 2 == 0 else "allow"
            t0 = time.perf_counter()
            status, _, data = writer.request(
                "PUT",
                f"/api/v1/policies/{target}",
                text.encode(),
                **{"Content-Type": "application/yaml", "If-Match": headers["etag"]},
            )
            t1 = time.perf_counter()
            assert status == 200, (status, data[:300])
            while probe.decision() != want:
                if time.perf_counter() - t0 > 60:
                    raise RuntimeError(f"the change never showed:\n{log.read_text()[-2000:]}")
            t2 = time.perf_counter()
            writes.append((t1 - t0) * 1000)
            serving_ms.append((t2 - t0) * 1000)
        return {
            "deployment": deployment,
            "rules": rules,
            "policies": policies,
            "changes": changes,
            "start_s": round(seeded_s, 1),
            "write_ms": _stats(writes),
            "serving_ms": _stats(serving_ms),
        }


def _stats(samples: list[float]) -> tuple[float, float]:
    return round(statistics.median(samples), 1), round(max(samples), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deployment", choices=["memory", "single", "both"], default="both")
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--database-url", help="PostgreSQL of the single deployment")
    args = parser.parse_args()
    deployments = ["memory", "single"] if args.deployment == "both" else [args.deployment]
    print(
        "| deployment | rules (policies) | start + seed s | write ms (median / max) "
        "| serving ms (median / max) |"
    )
    print("|---|---|---|---|---|")
    for deployment in deployments:
        database_url = None
        if deployment == "single":
            from policy_postgres.testing import database_url as test_database_url

            database_url = args.database_url or test_database_url()
        r = run(deployment, args.rules, args.policies, args.changes, database_url)
        print(
            f"| {deployment} | {r['rules']:,} ({r['policies']}) | {r['start_s']} "
            f"| {r['write_ms'][0]} / {r['write_ms'][1]} "
            f"| {r['serving_ms'][0]} / {r['serving_ms'][1]} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
