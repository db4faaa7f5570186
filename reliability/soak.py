"""Soak: the peak evaluation rate of a single deployment, then half of it for a long while.

    uv run --frozen python reliability/soak.py --seconds 150            # a short one, by hand
    uv run --frozen python reliability/soak.py --seconds 150 --spy DIR  # and py-spy both sides

The load comes from reliability/loadgen.py in a process of its own (fixed keep-alive
connections, an open loop measured from each request's scheduled time, its own event-loop
lag reported). This process starts the deployment, follows the generator's phases, and
samples RSS and open file descriptors of the HTTP server and its workers every 5 s.

Reported: RSS and fd growth from the first sample of the measured soak (after the peak
and the warm-up: every connection open, the pools full) to the last one before the
generator closes its connections; the p50/p99 of each window (a minute, a third of a
short run) and of the first and last; whether the generator kept up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stack import Backends, Stack

HERE = Path(__file__).resolve().parent
SAMPLE_EVERY = 5.0


async def soak(
    seconds: float,
    *,
    peak_seconds: float = 20,
    warmup: float = 30,
    rate: float = 0,
    connections: int = 32,
    spy: Path | None = None,
    backends: Backends | None = None,
) -> dict[str, Any]:
    stack = Stack("single", backends=backends)
    try:
        # Inside: a start that fails half-way (a server exited) still stops what it started.
        await asyncio.to_thread(stack.start)
        return await _soak(stack, seconds, peak_seconds, warmup, rate, connections, spy)
    finally:
        await asyncio.to_thread(stack.close)


async def _soak(
    stack: Stack,
    seconds: float,
    peak_seconds: float,
    warmup: float,
    rate: float,
    connections: int,
    spy: Path | None,
) -> dict[str, Any]:
    assert stack.http is not None
    server = stack.http
    gen = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "loadgen.py"),
        "--port",
        str(server.port),
        "--token",
        stack.token,
        "--seconds",
        str(seconds),
        "--peak-seconds",
        str(peak_seconds),
        "--warmup",
        str(warmup),
        "--rate",
        str(rate),
        "--connections",
        str(connections),
        stdout=asyncio.subprocess.PIPE,
    )
    assert gen.stdout is not None
    # (monotonic, rss, fds, of which sockets, of which connections to the database)
    samples: list[tuple[float, int, int, int, int]] = []
    assert stack.proxies is not None
    db_port = stack.proxies.pg
    schedule: dict[str, float] = {}
    result: dict[str, Any] = {}
    sampler: asyncio.Task[None] | None = None
    spies: list[subprocess.Popen[bytes]] = []

    async def sample() -> None:
        await asyncio.sleep(max(0.0, schedule["soak_start"] - time.monotonic()))
        while True:
            fds = server.fds()
            samples.append((time.monotonic(), server.rss_bytes(), *fds, server.sockets_to(db_port)))
            await asyncio.sleep(SAMPLE_EVERY)

    async for line in gen.stdout:
        event = json.loads(line)
        if event["event"] == "schedule":
            schedule = event
            sampler = asyncio.create_task(sample())
            if spy is not None:
                spies = _start_spies(spy, stack, gen.pid, event, seconds)
        elif event["event"] == "done" and sampler is not None:
            sampler.cancel()  # the last sample is the one before the connections close
        elif event["event"] == "result":
            result = event
    await gen.wait()
    for proc in spies:
        await asyncio.to_thread(proc.wait)
    if not result or not samples:
        raise RuntimeError(f"the load generator ended without a result (exit {gen.returncode})")
    # The first sample of the measured soak: the generator's connections are all open and
    # the server's pools have had the warm-up to fill, so what grows afterwards is a leak.
    base, last = samples[0], samples[-1]
    windows = result["windows"]
    first, final = windows[0], windows[-1]
    return {
        "seconds": result["seconds"],
        "peak_rps": result["peak_rps"],
        "rate_rps": result["rate_rps"],
        "warmup_s": result["warmup_s"],
        "connections": result["connections"],
        "connections_opened": result["connections_opened"],
        "answered": result["answered"],
        "failed": result["failed"],
        "achieved_rps": result["achieved_rps"],
        "late": result["late"],
        "generator_lag_p99_ms": result["generator_lag_p99_ms"],
        "generator_lag_max_ms": result["generator_lag_max_ms"],
        "rss_start_mb": round(base[1] / 2**20, 1),
        "rss_end_mb": round(last[1] / 2**20, 1),
        "rss_max_mb": round(max(s[1] for s in samples) / 2**20, 1),
        "rss_growth_pct": round(100 * (last[1] - base[1]) / base[1], 2) if base[1] else None,
        "fds_start": base[2],
        "fds_end": last[2],
        "fds_max": max(s[2] for s in samples),
        "socket_fds_start": base[3],
        "socket_fds_end": last[3],
        # the database pools' connections: bounded by the pools' max_size, they may grow
        # when a burst needs more at once; every other fd must not
        "db_sockets_start": base[4],
        "db_sockets_end": last[4],
        "db_sockets_max": max(s[4] for s in samples),
        "window_s": result["window_s"],
        "windows": windows,
        "p50_first_ms": first["p50_ms"],
        "p99_first_ms": first["p99_ms"],
        "p50_last_ms": final["p50_ms"],
        "p99_last_ms": final["p99_ms"],
        "p99_worst_ms": max(w["p99_ms"] for w in windows),
        "server_alive": server.proc.poll() is None,
    }


def _start_spies(
    out: Path, stack: Stack, generator: int, schedule: dict[str, float], seconds: float
) -> list[subprocess.Popen[bytes]]:
    """py-spy (when installed) on the generator and each HTTP worker, for the measured soak."""
    assert stack.http is not None
    out.mkdir(parents=True, exist_ok=True)
    targets = {"generator": generator} | {
        f"worker-{pid}": pid for pid in stack.http.pids() if pid != stack.http.proc.pid
    }
    delay = max(0.0, schedule["soak_start"] - time.monotonic())
    return [
        subprocess.Popen(
            [
                "sh",
                "-c",
                f"sleep {delay:.1f}; exec py-spy record -p {pid} -d {int(seconds)} -r 50 -f raw "
                f'--nonblocking --idle -o "{out}/{name}.txt"',
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in targets.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--peak-seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=30)
    parser.add_argument("--rate", type=float, default=0, help="default: half the peak")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--spy", type=Path, help="write py-spy profiles (raw) to this dir")
    args = parser.parse_args()
    result = asyncio.run(
        soak(
            args.seconds,
            peak_seconds=args.peak_seconds,
            warmup=args.warmup,
            rate=args.rate,
            connections=args.connections,
            spy=args.spy,
        )
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
