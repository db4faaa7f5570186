"""bench/bench_single_node_tail.py as docs/benchmarks.md shows it, at a rate this suite can afford.

The bench starts the single-node default (`llm-policy serve` with its embedded
PostgreSQL and the PostgreSQL decision log), offers an open-loop load and exits
non-zero unless every acknowledged decision is in the decision log afterwards:
that completeness is what this test checks (the latency figures are the bench's,
not a test's).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench_row(*args: str) -> str:
    """The bench's table row at 200/s (it exited 0: the log was complete)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    run = subprocess.run(
        [sys.executable, "bench/bench_single_node_tail.py", "--rate", "200", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, [*args, run.stdout + run.stderr]
    row = next(line for line in run.stdout.splitlines() if line.startswith("| 200 "))
    answered = int(row.split("|")[2].strip().replace(",", ""))
    assert answered > 0, row
    assert "| yes (" in row, row
    return row


def test_the_single_node_tail_bench_runs_and_finds_the_log_complete() -> None:
    _bench_row("--duration", "3", "--warmup", "1")


def test_the_documented_variants_run() -> None:
    """`--workers 2` (the log still complete across two writers) and `--deployment memory`."""
    _bench_row("--duration", "2", "--warmup", "1", "--workers", "2")
    _bench_row("--duration", "2", "--warmup", "1", "--deployment", "memory")
