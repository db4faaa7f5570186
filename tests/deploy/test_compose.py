"""deploy/compose.yaml brought up by docker-compose, on the host network.

This machine has no image registry and allows no bridge network, so the
test runs the compose file's own services that need no pulled image (the
one-shot `migrate`, then `http` and `grpc`, as defined there: command,
read-only root, tmpfs, volumes, grace period, depends_on conditions) with
`network_mode: host`, against this machine's PostgreSQL and Redis instead of
the `postgres` and `redis` services; Prometheus, Grafana and the collector
are third-party images and are not started (docs/deploy.md#docker-compose).
The whole file is still checked by `docker-compose config`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from policy_postgres.testing import usable_database_url
from policy_redis.testing import usable_redis_url

from .conftest import LABEL, ROOT, docker, free_port, logs
from .test_image import SECRET, cleanup, deny_then_allow, token, wait_ready, wait_serving
from .test_manifests import compose, tool
from .test_prometheus_live import FAILING_POLICY

APP_SERVICES = ("migrate", "http", "grpc")


def run_compose(binary: str, *args: str, timeout: float = 600) -> str:
    env = {**os.environ, "LLM_POLICY_JWT_SECRET": SECRET}
    done = subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert done.returncode == 0, f"docker-compose {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip()


def host_network_stack(image: str, env: dict[str, str], grpc_port: int) -> dict[str, Any]:
    """The app services of deploy/compose.yaml on the host network, with `env` on top."""
    services = compose()["services"]
    stack: dict[str, Any] = {}
    for name in APP_SERVICES:
        service = dict(services[name])
        service.pop("build")  # the image of this working tree, built by the fixture
        service.pop("ports", None)  # host networking publishes nothing
        service["image"] = image
        service["network_mode"] = "host"
        service["labels"] = {LABEL: ""}
        environment = {**service["environment"], **env}
        environment.pop("LLM_POLICY_OTLP_ENDPOINT")  # no collector here
        service["environment"] = environment
        depends = {k: v for k, v in service.get("depends_on", {}).items() if k in APP_SERVICES}
        if depends:
            service["depends_on"] = depends
        else:
            service.pop("depends_on", None)
        if "healthcheck" in service:
            check = json.dumps(service["healthcheck"]["test"]).replace("50051", str(grpc_port))
            service["healthcheck"] = {**service["healthcheck"], "test": json.loads(check)}
        stack[name] = service
    volumes = {
        volume.split(":")[0]: {"labels": {LABEL: ""}}
        for service in stack.values()
        for volume in service.get("volumes", [])
    }
    return {"services": stack, "volumes": volumes}


def metrics_of_two_workers(base: str, auth: dict[str, str]) -> None:
    """/metrics of the `http` service (2 workers: prometheus_client multiprocess files)."""
    created = httpx.post(
        f"{base}/api/v1/policies",
        content=FAILING_POLICY,
        headers={**auth, "Content-Type": "application/yaml"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    for tokens in (10, 20, 30):  # three contexts, three rule errors, whichever worker answers
        context = {"llm": {"max_tokens": tokens}, "user": {"quota": 0}}
        decided = httpx.post(f"{base}/api/v1/evaluate", json={"context": context}, headers=auth)
        assert [e["policy"] for e in decided.json()["errors"]] == ["quota-share"], decided.text
    text = httpx.get(f"{base}/metrics", timeout=10).text
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] not in ("#", ""))
    assert samples['llm_policy_evaluation_errors_total{policy="quota-share"}'] == "3.0"
    assert samples["llm_policy_ready"] == "1.0"
    assert samples["llm_policy_decision_log_spool_oldest_age_seconds"] == "0.0"


def test_the_compose_file_is_valid_for_docker_compose() -> None:
    binary = tool("docker-compose", "apt-get install docker-compose")
    config = run_compose(binary, "-f", str(ROOT / "deploy" / "compose.yaml"), "config")
    for name in ("postgres", "redis", *APP_SERVICES, "prometheus", "grafana", "otel-collector"):
        assert f"\n  {name}:\n" in config, config


def test_compose_brings_up_the_cluster_deployment(image: str, tmp_path: Path) -> None:
    binary = tool("docker-compose", "apt-get install docker-compose")
    database_url = asyncio.run(usable_database_url())
    redis_url = asyncio.run(usable_redis_url())
    schema = f"compose_{uuid.uuid4().hex[:12]}"
    port, grpc_port = free_port(), free_port()
    env = {
        "LLM_POLICY_DATABASE_URL": database_url,
        "LLM_POLICY_DATABASE_SCHEMA": schema,
        "LLM_POLICY_REDIS_URL": redis_url,
        "LLM_POLICY_JWT_SECRET": SECRET,
        "LLM_POLICY_HOST": "127.0.0.1",
        "LLM_POLICY_PORT": str(port),
        "LLM_POLICY_GRPC_HOST": "127.0.0.1",
        "LLM_POLICY_GRPC_PORT": str(grpc_port),
    }
    file = tmp_path / "compose.host.yaml"
    file.write_text(json.dumps(host_network_stack(image, env, grpc_port), indent=2))
    project = f"llmp-test-{uuid.uuid4().hex[:8]}"
    base = ["-p", project, "-f", str(file)]
    try:
        # up waits for `migrate` to complete (service_completed_successfully) before the servers.
        started = time.monotonic()
        run_compose(binary, *base, "up", "-d")
        label = f"label=com.docker.compose.project={project}"
        assert docker("network", "ls", "-q", "--filter", label) == ""  # host network only
        migrate, http, grpc = (run_compose(binary, *base, "ps", "-q", s) for s in APP_SERVICES)
        state = docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", migrate)
        assert state == "exited 0", logs(migrate)
        assert "applied" in logs(migrate) or "up to date" in logs(migrate), logs(migrate)
        wait_ready(f"http://127.0.0.1:{port}", http)
        seconds = time.monotonic() - started
        print(f"compose: up (migrate, then HTTP with 2 workers) to ready: {seconds:.1f} s")
        wait_serving(grpc_port, grpc)
        assert docker("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", http) == "true"
        auth = {"Authorization": f"Bearer {token(http)}"}
        deny_then_allow(f"http://127.0.0.1:{port}", auth)
        metrics_of_two_workers(f"http://127.0.0.1:{port}", auth)
        run_compose(binary, *base, "stop", "-t", "45")
        for name in (http, grpc):
            assert docker("inspect", "-f", "{{.State.ExitCode}}", name) == "0", logs(name)
    finally:
        run_compose(binary, *base, "down", "-v", "-t", "45")
        asyncio.run(cleanup(database_url, redis_url, schema))
    label = f"label=com.docker.compose.project={project}"
    assert docker("ps", "-aq", "--filter", label) == ""
    assert docker("volume", "ls", "-q", "--filter", label) == ""
