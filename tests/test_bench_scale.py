"""The scale benchmark of docs/benchmarks.md ("Scale") runs as documented (no timing asserted).

The command of the doc, shortened to small sizes: every row is printed with
every column, the generated requests decide as bench/scale_rules.py says (one
in eight denied), and the embedding step the doc describes (freeze_after_load)
is taken.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")


def test_the_documented_scale_command_runs() -> None:
    assert "nice uv run --frozen python bench/bench_scale.py" in DOC
    out = subprocess.run(
        [sys.executable, "bench/bench_scale.py", "--sizes", "20,200x2", "--samples", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    rows = [line for line in out.splitlines() if re.match(r"\| [0-9,]+ \| \d+ \|", line)]
    assert [r.split("|")[1:3] for r in rows] == [[" 20 ", " 1 "], [" 200 ", " 2 "]]
    for row in rows:
        assert "frozen" in row
        assert row.rstrip().endswith("| 25/200 |")
