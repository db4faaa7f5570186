"""Repeated SIGTERMs always end `llm-policy serve` cleanly (issue 13, regression).

granian's parent (the default server then) once deadlocked in its signal handler when a second SIGTERM
arrived while the first was being handled (the process group's signal plus
the one `uv run` forwards; systemd signals the whole group too) and needed
SIGKILL. A real `llm-policy serve` runs in its own process group; two or
three SIGTERMs in a row, to the parent alone or to the whole group, must end
it with exit status 0 and its shutdown logged, every time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from policy_cli.testing import clean_env, free_port, llm_policy, wait_ready

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]


def _start(tmp_path: Path, workers: int) -> tuple[subprocess.Popen[bytes], Path]:
    port = free_port()
    env = clean_env(
        LLM_POLICY_ENV="development",
        LLM_POLICY_DEPLOYMENT="memory" if workers == 1 else "single",
        LLM_POLICY_DATA_DIR=str(tmp_path / "data"),
        LLM_POLICY_PORT=str(port),
        LLM_POLICY_WORKERS=str(workers),
    )
    log = tmp_path / f"server-{port}.log"
    with log.open("wb") as out, (tmp_path / f"server-{port}.err").open("wb") as err:
        proc = subprocess.Popen(
            llm_policy("serve"),
            cwd=ROOT,
            env=env,
            stdout=out,  # the banner
            stderr=err,  # the logs
            start_new_session=True,
        )
    wait_ready(f"http://127.0.0.1:{port}", proc, log, 90)
    return proc, log


def _stopped(proc: subprocess.Popen[bytes]) -> int | None:
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


@pytest.mark.parametrize(
    ("target", "count", "gap"),
    [
        ("group", 2, 0.0),
        ("group", 3, 0.0),
        ("group", 3, 0.05),
        ("parent", 2, 0.0),
        ("parent", 3, 0.01),
        ("group", 3, 0.3),  # the second and third arrive during the shutdown
    ],
)
def test_repeated_sigterms_end_in_a_clean_exit(
    tmp_path: Path, target: str, count: int, gap: float
) -> None:
    proc, log = _start(tmp_path, workers=1)
    for _ in range(count):
        if target == "group":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        if gap:
            time.sleep(gap)
    code = _stopped(proc)
    text = log.read_text(errors="replace")
    assert code is not None, f"needed SIGKILL after {count} SIGTERMs to the {target}:\n{text}"
    errors = log.with_suffix(".err").read_text(errors="replace")
    assert code == 0, text + errors
    assert "Traceback" not in text + errors
    # Regression (issue 13): granian's "[INFO] ..." lines among the JSON logs. The
    # server's own lines (uvicorn's now, granian's with --server-impl granian) are JSON too.
    records = [json.loads(line) for line in errors.splitlines()]
    assert all(isinstance(r, dict) for r in records), errors
    assert any(
        str(r.get("logger", "")).startswith(("uvicorn", "granian", "_granian")) for r in records
    ), errors
