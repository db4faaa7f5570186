"""`llm-policy serve` with two workers outlives a worker killed with SIGKILL (issue 13).

granian shut the whole server down when one worker died (an OOM kill takes a worker, the
service stops) until told respawn_failed_workers; uvicorn's supervisor, the default server
now, starts a new worker too. Both go on answering.
Found by the reliability suite's SIGKILL fault (reliability/faults.py).
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

from policy_cli.testing import clean_env, free_port, llm_policy, server_workers, serving
from policy_postgres.testing import embedded_data_dir

ROOT = Path(__file__).resolve().parents[1]


def evaluate(url: str, token: str) -> str:
    request = urllib.request.Request(
        url + "/api/v1/evaluate",
        data=json.dumps({"context": {"user": {"id": "u1"}}}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return str(json.loads(resp.read())["decision"])


def test_a_worker_killed_with_sigkill_is_replaced_and_the_server_goes_on() -> None:
    with embedded_data_dir() as data:
        _kill_a_worker(data)


def _kill_a_worker(tmp_path: Path) -> None:
    import subprocess
    import time

    port = free_port()
    env = clean_env(
        LLM_POLICY_ENV="development",
        LLM_POLICY_DEPLOYMENT="single",  # several workers need a shared store: embedded PostgreSQL
        LLM_POLICY_DATA_DIR=str(tmp_path),
        LLM_POLICY_PORT=str(port),
        LLM_POLICY_WORKERS="2",
    )
    token = subprocess.run(
        llm_policy("token"), env=env, capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    with serving(
        llm_policy("serve"), port=port, env=env, log=tmp_path / "serve.log", cwd=ROOT
    ) as srv:
        workers = server_workers(srv.proc.pid)
        assert len(workers) == 2
        victim = max(workers)
        os.kill(victim, signal.SIGKILL)
        # Wait (no time assertion: the bound only stops a hung test) for the replacement.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = server_workers(srv.proc.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.2)
        assert srv.proc.poll() is None, (tmp_path / "serve.log").read_text()
        now = server_workers(srv.proc.pid)
        assert len(now) == 2
        assert victim not in now
        # The new worker may still be starting: wait for /ready, then every answer is right.
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(srv.url + "/ready", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        assert {evaluate(srv.url, token) for _ in range(20)} == {"allow"}
