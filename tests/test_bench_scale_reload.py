"""bench/bench_scale_reload.py and bench_scale_load.py run as docs/benchmarks.md shows them (small sizes).

It starts `llm-policy serve` (memory deployment), seeds it, replaces one policy
over the HTTP API a few times and waits for a probe request to show each
change; this checks that it gets through and prints its table, not its figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_reload_bench_runs_and_prints_its_table() -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    args = ["--deployment", "memory", "--rules", "200", "--policies", "4", "--changes", "2"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_scale_reload.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| memory |")]
    assert len(rows) == 1, out
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == "200 (4)"
    for cell in cells[3:]:
        median, worst = (float(x) for x in cell.split(" / "))
        assert 0 < median <= worst


def test_the_load_bench_runs_and_prints_its_table() -> None:
    args = ["--rules", "100", "--policies", "2", "--slow"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_scale_load.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| 100 (2) |")]
    assert [r.split("|")[2].strip() for r in rows] == ["fast first", "round-trip only"], out
