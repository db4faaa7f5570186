"""The container image, run as a deployment would run it.

The single deployment runs with a read-only root filesystem and its state on
a volume: it answers /ready, gives the README's deny and allow, stops
gracefully on SIGTERM, and a second container on the same volume still has
the policy and the decision history. The cluster deployment (HTTP and gRPC
containers) runs against this machine's PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import psycopg
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from policy_postgres.testing import usable_database_url
from policy_redis import close_client, open_client
from policy_redis.testing import delete_prefix, usable_redis_url

from .conftest import LABEL, Containers, docker, free_port, logs

SECRET = "deploy-test-secret-" + "x" * 32
GRACE_SECONDS = 40  # the pod's terminationGracePeriodSeconds (deploy/k8s)

POLICY = """\
metadata:
  id: free-tier-models
  description: The free tier may not use the large GPT-4 models.
rules:
  - id: no-large-models
    condition: "team.tier == 'free' && llm.model in ['gpt-4', 'gpt-4o']"
    action:
      decision: deny
      reason: "{{ llm.model }} is not available on the free tier; use gpt-4o-mini"
"""


def request(model: str) -> dict[str, Any]:
    return {
        "policies": ["free-tier-models"],
        "context": {"team": {"id": "t-7", "tier": "free"}, "llm": {"model": model, "prompt": "Hi"}},
    }


def wait_ready(base: str, name: str, timeout: float = 300) -> float:
    """Seconds from now until /ready answers 200; fails with the container's log."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if docker("inspect", "-f", "{{.State.Running}}", name) != "true":
            raise AssertionError(f"{name} exited:\n{logs(name)}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{name} never became ready:\n{logs(name)}")


def token(name: str) -> str:
    return docker("exec", name, "llm-policy", "token")


def deny_then_allow(base: str, auth: dict[str, str]) -> None:
    created = httpx.post(
        f"{base}/api/v1/policies",
        content=POLICY,
        headers={**auth, "Content-Type": "application/yaml"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    denied = httpx.post(f"{base}/api/v1/evaluate", json=request("gpt-4o"), headers=auth, timeout=10)
    assert denied.status_code == 200, denied.text
    body = denied.json()
    assert body["decision"] == "deny"
    assert body["allowed"] is False
    assert body["reason"] == "gpt-4o is not available on the free tier; use gpt-4o-mini"
    assert body["matched_rules"] == ["free-tier-models/no-large-models"]
    allowed = httpx.post(
        f"{base}/api/v1/evaluate", json=request("gpt-4o-mini"), headers=auth, timeout=10
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["decision"] == "allow"
    assert allowed.json()["matched_rules"] == []


def history(base: str, auth: dict[str, str]) -> list[str]:
    """Every decision in the audit log, oldest first (the volume starts empty: no seed)."""
    deadline = time.monotonic() + 30
    while True:
        reply = httpx.get(
            f"{base}/api/v1/evaluate/history",
            headers=auth,
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        decisions = [item["decision"] for item in reversed(reply.json()["items"])]
        # The decision log is written in the background: give it a moment.
        if len(decisions) >= 2 or time.monotonic() > deadline:
            return decisions
        time.sleep(0.3)


def test_image_runs_read_only_with_a_volume(image: str, containers: Containers) -> None:
    volume = containers.volume()
    port = free_port()
    env = {
        "LLM_POLICY_HOST": "127.0.0.1",
        "LLM_POLICY_PORT": str(port),
        "LLM_POLICY_JWT_SECRET": SECRET,
    }
    base = f"http://127.0.0.1:{port}"
    first = containers.run(image, env=env, volume=volume)
    seconds = wait_ready(base, first)
    print(f"start to ready (single, embedded PostgreSQL, empty volume): {seconds:.1f} s")
    assert docker("inspect", "-f", "{{.Config.User}}", first) == "10001:10001"
    auth = {"Authorization": f"Bearer {token(first)}"}
    deny_then_allow(base, auth)
    assert history(base, auth) == ["deny", "allow"]

    # SIGTERM: docker stop waits GRACE_SECONDS, then kills (exit 137). A graceful
    # shutdown exits 0 on its own.
    stopping = time.monotonic()
    docker("stop", "-t", str(GRACE_SECONDS), first, timeout=GRACE_SECONDS + 30)
    print(f"SIGTERM to exit (single): {time.monotonic() - stopping:.1f} s")
    assert docker("inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", first) == "0 false"
    # The worker ran the app's shutdown (closing the services flushes the decision log).
    assert "Application shutdown complete" in logs(first)

    second = containers.run(image, env=env, volume=volume)
    seconds = wait_ready(base, second)
    print(f"start to ready (single, existing volume): {seconds:.1f} s")
    auth = {"Authorization": f"Bearer {token(second)}"}
    stored = httpx.get(f"{base}/api/v1/policies/free-tier-models", headers=auth, timeout=10)
    assert stored.status_code == 200, stored.text
    assert history(base, auth) == ["deny", "allow"]
    again = httpx.post(f"{base}/api/v1/evaluate", json=request("gpt-4o"), headers=auth, timeout=10)
    assert again.json()["decision"] == "deny"


async def grpc_status(port: int) -> int:
    channel = Channel("127.0.0.1", port)
    try:
        reply = await HealthStub(channel).Check(HealthCheckRequest(service=""), timeout=5)
        return int(reply.status)
    finally:
        channel.close()


def wait_serving(port: int, name: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker("inspect", "-f", "{{.State.Running}}", name) != "true":
            raise AssertionError(f"{name} exited:\n{logs(name)}")
        try:
            if asyncio.run(grpc_status(port)) == HealthCheckResponse.SERVING:
                return
        except (TimeoutError, OSError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"{name} never became SERVING:\n{logs(name)}")


async def cleanup(database_url: str, redis_url: str, schema: str) -> None:
    client = await open_client(redis_url)
    try:
        await delete_prefix(client, f"llm-policy:{schema}:")
    finally:
        await close_client(client)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_image_in_the_cluster_deployment(image: str, containers: Containers) -> None:
    database_url = asyncio.run(usable_database_url())
    redis_url = asyncio.run(usable_redis_url())
    schema = f"deploy_{uuid.uuid4().hex[:12]}"
    port, grpc_port = free_port(), free_port()
    env = {
        "LLM_POLICY_DEPLOYMENT": "cluster",
        "LLM_POLICY_DATABASE_URL": database_url,
        "LLM_POLICY_DATABASE_SCHEMA": schema,
        "LLM_POLICY_REDIS_URL": redis_url,
        "LLM_POLICY_JWT_SECRET": SECRET,
        "LLM_POLICY_HOST": "127.0.0.1",
        "LLM_POLICY_PORT": str(port),
        "LLM_POLICY_GRPC_HOST": "127.0.0.1",
        "LLM_POLICY_GRPC_PORT": str(grpc_port),
    }
    try:
        # The one-shot migration, as the compose file and the k8s Job run it.
        migrate = docker(
            "run", "--rm", "--label", LABEL, "--network", "host", "--read-only", "--tmpfs", "/tmp",
            *[f"-e{k}={v}" for k, v in env.items()],
            image, "db", "migrate",
        )  # fmt: skip
        assert "applied" in migrate or "up to date" in migrate, migrate
        http = containers.run(image, env={**env, "LLM_POLICY_MIGRATE_ON_START": "false"})
        grpc = containers.run(image, "grpc", "serve", env=env)
        base = f"http://127.0.0.1:{port}"
        seconds = wait_ready(base, http)
        print(f"start to ready (cluster, HTTP): {seconds:.1f} s")
        wait_serving(grpc_port, grpc)
        deny_then_allow(base, {"Authorization": f"Bearer {token(http)}"})
        docker("stop", "-t", str(GRACE_SECONDS), grpc, http, timeout=GRACE_SECONDS + 30)
        for name in (http, grpc):
            assert docker("inspect", "-f", "{{.State.ExitCode}}", name) == "0", logs(name)
    finally:
        asyncio.run(cleanup(database_url, redis_url, schema))
