"""`make reliability` (reliability/run.py): its verdicts, its profiles, and CI running it.

The suite itself runs in CI (`make reliability PROFILE=ci` in .ci/run) and on demand; these
tests check the judging code and that the commands docs/reliability.md shows exist.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "reliability"))

import run  # noqa: E402


def fault(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "fault": "PostgreSQL stopped, restarted",
        "deployment": "single",
        "evaluations": 1000,
        "failed_evaluations": 0,
        "records_lost": 0,
        "writes_acked": 10,
        "writes_503": 1,
        "writes_failed": 0,
        "writes_lost": 0,
        "usage_ok": 5,
        "usage_503": 0,
        "usage_failed": 0,
        "recovery_s": 1.5,
        "http_alive": True,
        "grpc_alive": True,
    }
    return base | changes


def test_a_fault_holds_only_with_nothing_failed_or_lost() -> None:
    assert run.fault_ok(fault())
    for broken in (
        {"failed_evaluations": 1},
        {"records_lost": 1},
        {"writes_lost": 1},
        {"audit_lost": 1},
        {"writes_failed": 1},
        {"usage_failed": 1},
        {"recovery_s": None},
        {"http_alive": False},
        {"non_json_log_lines": 2},
    ):
        assert not run.fault_ok(fault(**broken)), broken


def test_a_sigkill_that_loses_records_is_a_failure_not_a_stated_limit() -> None:
    # The decision-log journal (5ddf192) keeps what a killed worker had answered: the
    # SIGKILL fault held 0 lost in 5 runs out of 5 (2026-12-02), so a loss fails now.
    killed = fault(fault="HTTP worker SIGKILL", records_lost=14)
    assert not run.fault_ok(killed)
    assert "NO" in run.table({"faults": [killed]})
    assert run.fault_ok(fault(fault="HTTP worker SIGKILL"))


def test_a_failed_fault_says_why_in_the_table() -> None:
    # CI only keeps the table: a failure without its reason cannot be diagnosed afterwards.
    failed = fault(failed_evaluations=1, reasons={"ServerDisconnectedError": 1})
    row = run.table({"faults": [failed]}).splitlines()[-1]
    assert "failures: 1x ServerDisconnectedError" in row
    assert row.rstrip().endswith("NO")
    assert "failures" not in run.table({"faults": [fault()]})


def test_the_soak_verdict() -> None:
    soak = {
        "seconds": 600,
        "rate_rps": 200,
        "peak_rps": 400,
        "failed": 0,
        "server_alive": True,
        "rss_start_mb": 200,
        "rss_end_mb": 210,
        "rss_growth_pct": 5.0,
        "fds_start": 150,
        "fds_end": 150,
        "p99_first_ms": 40,
        "p99_last_ms": 50,
    }
    assert run.soak_ok(soak)
    assert not run.soak_ok(soak | {"rss_growth_pct": 10.0})
    assert not run.soak_ok(soak | {"fds_end": 150 + run.FD_SLACK + 1})
    # the database pools' connections grow within their bound; the other fds must not
    pools = {"db_sockets_start": 10, "db_sockets_end": 20, "fds_end": 160}
    assert run.soak_ok(soak | pools)
    assert not run.soak_ok(soak | pools | {"fds_end": 160 + run.FD_SLACK + 1})
    # the last window's p99 within twice the first's plus a stated slack
    assert run.soak_ok(soak | {"p99_last_ms": 2 * 40 + run.P99_SLACK_MS})
    assert not run.soak_ok(soak | {"p99_last_ms": 2 * 40 + run.P99_SLACK_MS + 1})
    assert not run.soak_ok(soak | {"failed": 1})
    # a server (or generator) that fell behind the schedule did not hold the rate
    assert run.soak_ok(soak | {"achieved_rps": 195})
    assert not run.soak_ok(soak | {"achieved_rps": 180})
    assert run.all_held({"soak": soak, "hostile": {"exit": 0}})
    assert not run.all_held({"soak": soak, "hostile": {"exit": 1}})


def test_the_documented_commands_exist_and_ci_runs_the_short_profile() -> None:
    doc = (ROOT / "docs" / "reliability.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^reliability: ", makefile, flags=re.MULTILINE)
    for profile in re.findall(r"make reliability PROFILE=(\w+)", doc):
        assert profile in run.PROFILES
    assert "make reliability PROFILE=ci" in (ROOT / ".ci" / "run").read_text()


def test_the_table_ends_with_the_wall_time_of_each_part_and_the_whole_run() -> None:
    results = {
        "faults": [fault()],
        "hostile": {"paths": ["tests/reliability"], "exit": 0, "summary": "66 passed"},
        "part_seconds": {"fuzz": 75.0, "hostile": 60.2, "faults": 300.1},
        "seconds": 441.0,
    }
    last = run.table(results).splitlines()[-1]
    assert "total" in last
    assert "441.0 s (fuzz 75.0 s, hostile 60.2 s, faults 300.1 s)" in last


def test_a_short_soak_by_hand_runs_end_to_end() -> None:
    """docs/reliability.md's `reliability/soak.py` command, shortened: the deployment, the
    generator in its own process, the samples and the windows all come back."""
    import json
    import os
    import shutil
    import subprocess

    import stack

    try:
        stack._pg_bin("initdb")
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL's binaries are required in CI: {exc}")
        pytest.skip(str(exc))
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server is not installed")
    args = ["--seconds", "3", "--peak-seconds", "2", "--warmup", "1", "--connections", "4"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "reliability" / "soak.py"), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["failed"] == 0
    assert result["answered"] > 0
    assert result["connections_opened"] == 4  # one each, none reopened
    assert len(result["windows"]) == 3  # a third of the run each
    assert result["fds_start"] > 0
    assert 0 < result["db_sockets_start"] < result["fds_start"]
    assert result["server_alive"]
