"""HTTP benchmark: wrk against POST /api/v1/evaluate (and /evaluate/batch).

    uv run --frozen python bench/bench_http.py                   # granian and uvicorn, 1 and 2 workers
    uv run --frozen python bench/bench_http.py --server granian --workers 2 --duration 20
    uv run --frozen python bench/bench_http.py --batch 1000      # the batch endpoint

The server runs in its own processes (granian or uvicorn, started through
`policy_http.server.run_server`, the same path `llm-policy serve` uses) with
in-memory services (the `memory` deployment: L1 decision cache, in-memory
decision log). wrk (Debian's package: `apt-get install -y wrk`) is the load
generator: 32 connections, 20 s by default. The workload is
bench/reference_policies.yaml + bench/reference_contexts.json when present,
else the example policies and contexts. Figures go to stdout as a Markdown
table (docs/benchmarks-http.md records them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SECRET = "bench-secret-0123456789-abcdefghijklmnop"
LUA = BENCH / "wrk_evaluate.lua"
ENV_POLICIES = "LLM_POLICY_BENCH_POLICIES"
ENV_CACHE = "LLM_POLICY_BENCH_CACHE"


# --- the app factory the server workers import ------------------------------------


def workload() -> tuple[list[Path], list[dict[str, Any]]]:
    """Policy files and contexts: the reference workload, else the examples."""
    ref_policies = BENCH / "reference_policies.yaml"
    ref_contexts = BENCH / "reference_contexts.json"
    if ref_policies.exists() and ref_contexts.exists():
        items = json.loads(ref_contexts.read_text())
        return [ref_policies], [i.get("context", i) for i in items]
    examples = ROOT / "examples"
    files = sorted(p for p in (examples / "policies").glob("*.yaml") if p.name != "budget.yaml")
    contexts = [json.loads(p.read_text()) for p in sorted((examples / "contexts").glob("*.json"))]
    return files, contexts


@dataclass
class _Services:
    policies: Any
    evaluation: Any
    usage: Any
    api_keys: Any
    decisions: Any
    holder: Any
    checks: dict[str, Any] = field(default_factory=dict)

    async def ready(self) -> bool:
        return bool(self.holder.loaded)


@asynccontextmanager
async def _memory_services() -> AsyncIterator[_Services]:
    from policy_core.memory import (
        MemoryApiKeyStore,
        MemoryDecisionCache,
        MemoryDecisionLog,
        MemoryPolicyStore,
        MemoryUsageStore,
        SystemClock,
    )
    from policy_core.services import (
        ApiKeyService,
        EngineHolder,
        EvaluationService,
        PolicyService,
        UsageService,
    )

    clock = SystemClock()
    holder = EngineHolder()
    store = MemoryPolicyStore(clock)
    # Bounded like a queue that ships records out (the PostgreSQL adapter's batched COPY):
    # an unbounded in-memory log would measure the garbage collector, not the API.
    log = MemoryDecisionLog(max_records=10_000)
    usage = MemoryUsageStore(clock)
    policies = PolicyService(reader=store, writer=store, holder=holder)
    await policies.start()
    files = [Path(p) for p in os.environ.get(ENV_POLICIES, "").split(os.pathsep) if p]
    for path in files or workload()[0]:
        for text in _documents(path.read_text()):
            await policies.create(text, author="bench")
    cache = MemoryDecisionCache(clock) if os.environ.get(ENV_CACHE, "1") == "1" else None
    keep_log = os.environ.get("LLM_POLICY_BENCH_LOG", "1") == "1"
    evaluation = EvaluationService(
        holder, cache=cache, usage=usage, log=log if keep_log else None, clock=clock
    )
    try:
        yield _Services(
            policies=policies,
            evaluation=evaluation,
            usage=UsageService(usage),
            api_keys=ApiKeyService(MemoryApiKeyStore(), clock),
            decisions=log,
            holder=holder,
        )
    finally:
        await log.flush()
        await policies.close()


def _documents(text: str) -> list[str]:
    """One text per YAML document (the store takes one policy per write)."""
    parts = re.split(r"(?m)^---\s*$", text)
    return [
        p
        for p in parts
        if p.strip()
        and not all(line.strip().startswith("#") or not line.strip() for line in p.splitlines())
    ]


def create_bench_app() -> Any:
    """The factory each server worker calls."""
    from policy_http import HttpSettings, create_app

    # Defaults as deployed: rate limits on, gc.freeze after startup.
    settings = HttpSettings(
        jwt_secret=SECRET, gc_freeze=os.environ.get("LLM_POLICY_BENCH_GC_FREEZE", "1") == "1"
    )
    return create_app(_memory_services, settings)


# --- the driver -------------------------------------------------------------------------


def _token() -> str:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    now = int(time.time())
    claims = {"sub": "bench", "roles": ["evaluator"], "iat": now, "exp": now + 3600}
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(SECRET))


def _bodies(batch: int, path: Path) -> None:
    _, contexts = workload()
    lines = []
    for i in range(max(len(contexts), 64) if batch == 0 else 16):
        if batch == 0:
            ctx = contexts[i % len(contexts)]
            lines.append(json.dumps({"context": ctx}, separators=(",", ":")))
        else:
            reqs = [{"context": contexts[(i * batch + j) % len(contexts)]} for j in range(batch)]
            lines.append(json.dumps({"requests": reqs}, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n")


def _wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not become ready at {url}")


def _start(server: str, workers: int, port: int, cache: bool) -> subprocess.Popen[bytes]:
    code = (
        "from policy_http.server import run_server, ServerOptions;"
        f"run_server('bench_http:create_bench_app', ServerOptions(port={port}, "
        f"workers={workers}, server={server!r}, log_level='warning'))"
    )
    env = {**os.environ, "PYTHONPATH": str(BENCH), ENV_CACHE: "1" if cache else "0"}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, start_new_session=True, cwd=str(ROOT)
    )


def _start_cli(server: str, workers: int, port: int, database_url: str) -> subprocess.Popen[bytes]:
    """`llm-policy serve` itself: the single-node deployment on PostgreSQL."""
    env = {
        **os.environ,
        "LLM_POLICY_DEPLOYMENT": "single",
        "LLM_POLICY_DATABASE_URL": database_url,
        "LLM_POLICY_JWT_SECRET": SECRET,
        "LLM_POLICY_LOG_LEVEL": "warning",
    }
    seed = workload()[0][0]
    command = [
        sys.executable, "-m", "policy_cli", "serve", "--port", str(port),
        "--workers", str(workers), "--server-impl", server, "--seed", str(seed),
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, start_new_session=True, cwd=str(ROOT))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--batch", type=int, default=0, help="requests per batch (0: /evaluate)")
    parser.add_argument("--no-cache", action="store_true", help="disable the L1 decision cache")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument(
        "--cli",
        metavar="DATABASE_URL",
        help="run `llm-policy serve` (single-node deployment) on this PostgreSQL database "
        "instead of the in-memory services",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit(
            "wrk is not installed: `apt-get update && apt-get install -y wrk` (Debian/Ubuntu)"
        )
    servers = ["granian", "uvicorn"] if args.server == "both" else [args.server]
    path = "/api/v1/evaluate/batch" if args.batch else "/api/v1/evaluate"
    per_request = args.batch or 1
    print(
        "| server | workers | endpoint | requests/s | decisions/s | p50 ms | p99 ms "
        "| server CPU µs/decision |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        bodies = Path(tmp) / "bodies.txt"
        _bodies(args.batch, bodies)
        for server in servers:
            for workers in args.workers:
                if args.cli:
                    proc = _start_cli(server, workers, args.port, args.cli)
                else:
                    proc = _start(server, workers, args.port, not args.no_cache)
                url = f"http://127.0.0.1:{args.port}"
                try:
                    _wait_ready(url)
                    _wrk(url, path, bodies, args.connections, 2, args.threads)  # warm-up
                    cpu = _cpu_seconds(proc.pid)
                    r = _wrk(url, path, bodies, args.connections, args.duration, args.threads)
                    cpu = _cpu_seconds(proc.pid) - cpu
                finally:
                    _stop(proc)
                if r["non2xx"] or r["socket_errors"]:
                    print(r["raw"], file=sys.stderr)
                decisions = r["rps"] * per_request * args.duration
                print(
                    f"| {server} | {workers} | {path} | "
                    f"{r['rps']:,.0f} | {r['rps'] * per_request:,.0f} | "
                    f"{r['p50']:.2f} | {r['p99']:.2f} | {cpu / decisions * 1e6:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
