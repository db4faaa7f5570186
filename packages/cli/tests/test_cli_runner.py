"""`policy_cli.runner` under uvicorn: a worker that cannot start ends the server with status 3."""

from __future__ import annotations

import subprocess
import sys

from policy_cli.testing import free_port


def test_a_worker_failing_at_startup_exits_3() -> None:
    code = (
        "from policy_cli.runner import run_asgi\n"
        f"run_asgi('policy_cli.no_such_module:app', host='127.0.0.1', port={free_port()},"
        " workers=1, log_level='warning')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "policy_cli.no_such_module" in done.stderr
