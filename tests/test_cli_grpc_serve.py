"""`llm-policy grpc serve`: starts on the deployment, answers health checks, drains on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from policy_cli.testing import clean_env, free_port, llm_policy

ROOT = Path(__file__).resolve().parents[1]


async def health(port: int, service: str) -> int:
    channel = Channel("127.0.0.1", port)
    try:
        reply = await HealthStub(channel).Check(HealthCheckRequest(service=service), timeout=5)
        return int(reply.status)
    finally:
        channel.close()


def wait_serving(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"grpc serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if asyncio.run(health(port, "")) == HealthCheckResponse.SERVING:
                return
        except (TimeoutError, OSError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"the gRPC server did not become SERVING:\n{log.read_text()}")


def test_grpc_serve_answers_health_and_drains(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(
        LLM_POLICY_ENV="development",
        LLM_POLICY_DEPLOYMENT="memory",
        LLM_POLICY_DATA_DIR=str(tmp_path),
    )
    log = tmp_path / "grpc.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            llm_policy(
                "grpc", "serve", "--port", str(port), "--seed", str(ROOT / "examples" / "policies")
            ),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_serving(port, proc, log)
        status = asyncio.run(health(port, "llm_policy.v1.PolicyService"))
        assert status == HealthCheckResponse.SERVING
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    assert f"gRPC API on 127.0.0.1:{port}" in log.read_text()
