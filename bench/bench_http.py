"""HTTP benchmark: wrk against `llm-policy serve`, POST /api/v1/evaluate (and /evaluate/batch).

    uv run --frozen python bench/bench_http.py                   # memory deployment, granian and uvicorn, 1 worker
    uv run --frozen python bench/bench_http.py --deployment single --workers 1 2
    uv run --frozen python bench/bench_http.py --batch 1000      # the batch endpoint

The server is the product itself: the `llm-policy serve` command of this
environment, started with its own settings (LLM_POLICY_* variables and
flags), so it is wired by the same bootstrap, served by the same runner and
configured with the same defaults as a deployment. `--deployment memory`
(the default) keeps everything in process and runs one worker (the memory
deployment refuses several: each would keep its own state); `--deployment
single` runs on PostgreSQL (`--database-url`, by default the local test
database) in a schema of its own, dropped afterwards, with the PostgreSQL
decision log, and takes several workers. wrk (Debian's package: `apt-get
install -y wrk`) is the load generator: 32 connections, 20 s by default. The
workload is bench/reference_policies.yaml (seeded with `--seed`) and
bench/reference_contexts.json. Figures go to stdout as a Markdown table
(docs/benchmarks-http.md records them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from policy_cli.testing import clean_env, llm_policy, serving

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SECRET = "bench-secret-0123456789-abcdefghijklmnop"
LUA = BENCH / "wrk_evaluate.lua"
POLICIES = BENCH / "reference_policies.yaml"
CONTEXTS = BENCH / "reference_contexts.json"
SCHEMA = f"bench_http_{os.getpid()}"


def contexts() -> list[dict[str, Any]]:
    """The reference contexts (the requests wrk sends in turn)."""
    items = json.loads(CONTEXTS.read_text())
    return [i.get("context", i) for i in items]


def _bodies(batch: int, path: Path) -> None:
    ctxs = contexts()
    lines = []
    for i in range(max(len(ctxs), 64) if batch == 0 else 16):
        if batch == 0:
            lines.append(json.dumps({"context": ctxs[i % len(ctxs)]}, separators=(",", ":")))
        else:
            reqs = [{"context": ctxs[(i * batch + j) % len(ctxs)]} for j in range(batch)]
            lines.append(json.dumps({"requests": reqs}, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n")


def _token() -> str:
    from policy_core.auth import mint_token

    return mint_token(SECRET, subject="bench", roles=["evaluator"], ttl_seconds=3600)


# --- the server: `llm-policy serve` -------------------------------------------------------


def serve_environment(deployment: str, data_dir: str, database_url: str | None) -> dict[str, str]:
    """The environment of `llm-policy serve`: this one without its LLM_POLICY_*, plus ours."""
    env = clean_env(
        LLM_POLICY_DEPLOYMENT=deployment,
        LLM_POLICY_DATA_DIR=data_dir,
        LLM_POLICY_JWT_SECRET=SECRET,
        LLM_POLICY_LOG_LEVEL="warning",
    )
    if database_url is not None:
        env |= {"LLM_POLICY_DATABASE_URL": database_url, "LLM_POLICY_DATABASE_SCHEMA": SCHEMA}
    return env


def serve_command(server: str, workers: int, port: int, python: str | None = None) -> list[str]:
    """`llm-policy serve ...` of this environment, or of another one's interpreter (`python`)."""
    args = ("serve", "--port", str(port), "--workers", str(workers),
            "--server-impl", server, "--seed", str(POLICIES))  # fmt: skip
    return [python, "-m", "policy_cli", *args] if python else llm_policy(*args)


@contextmanager
def bench_schema(database_url: str | None) -> Iterator[None]:
    """The single deployment's schema (`serve` creates and migrates it) is dropped at the end."""
    try:
        yield
    finally:
        if database_url is not None:
            import psycopg

            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')  # our own name


def _cpu_seconds(pgid: int) -> float:
    """User + system CPU of every process in the server's process group (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 (pgrp), after pid and comm
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def _wrk(
    url: str, path: str, body_file: Path, connections: int, duration: int, threads: int = 2
) -> dict[str, Any]:
    env = {**os.environ, "BODIES": str(body_file), "TOKEN": _token(), "TARGET": path}
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(LUA),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50": _ms(p50.group(1)) if p50 else float("nan"),
        "p99": _ms(p99.group(1)) if p99 else float("nan"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
        "raw": out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=["granian", "uvicorn", "both"], default="both")
    parser.add_argument(
        "--deployment",
        choices=["memory", "single"],
        default="memory",
        help="LLM_POLICY_DEPLOYMENT of the server (memory: one worker only)",
    )
    parser.add_argument("--database-url", help="PostgreSQL of the single deployment")
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before measuring")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--batch", type=int, default=0, help="requests per batch (0: /evaluate)")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument(
        "--server-python",
        help="interpreter of another checkout's environment whose `llm-policy serve` is measured"
        " (before/after comparisons with one load generator); default: this one",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit(
            "wrk is not installed: `apt-get update && apt-get install -y wrk` (Debian/Ubuntu)"
        )
    if args.deployment == "memory" and max(args.workers) > 1:
        raise SystemExit("the memory deployment runs one worker: use --deployment single")
    database_url = None
    if args.deployment == "single":
        from policy_postgres.testing import database_url as test_database_url

        database_url = args.database_url or test_database_url()
    servers = ["granian", "uvicorn"] if args.server == "both" else [args.server]
    path = "/api/v1/evaluate/batch" if args.batch else "/api/v1/evaluate"
    per_request = args.batch or 1
    print(
        "| server | deployment | workers | endpoint | requests/s | decisions/s | p50 ms | p99 ms "
        "| server CPU µs/decision |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, bench_schema(database_url):
        bodies = Path(tmp) / "bodies.txt"
        _bodies(args.batch, bodies)
        env = serve_environment(args.deployment, str(Path(tmp) / "data"), database_url)
        for server in servers:
            for workers in args.workers:
                command = serve_command(server, workers, args.port, args.server_python)
                log = Path(tmp) / f"serve-{server}-{workers}.log"
                with serving(command, port=args.port, env=env, log=log, cwd=ROOT) as srv:
                    if args.warmup:
                        _wrk(srv.url, path, bodies, args.connections, args.warmup, args.threads)
                    cpu = _cpu_seconds(srv.proc.pid)
                    r = _wrk(srv.url, path, bodies, args.connections, args.duration, args.threads)
                    cpu = _cpu_seconds(srv.proc.pid) - cpu
                if r["non2xx"] or r["socket_errors"]:
                    print(r["raw"], file=sys.stderr)
                decisions = r["rps"] * per_request * args.duration
                print(
                    f"| {server} | {args.deployment} | {workers} | {path} | "
                    f"{r['rps']:,.0f} | {r['rps'] * per_request:,.0f} | "
                    f"{r['p50']:.2f} | {r['p99']:.2f} | {cpu / decisions * 1e6:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
