"""Fixtures of the deployment tests: the Docker daemon, the image, free ports.

The image is built from the working tree with `deploy/Dockerfile` on a local
base image (`deploy/base-image.sh`, made once and kept), every build and
container on the host network. Without a Docker daemon these tests skip, or
fail when CI=true (CI starts the daemon, see .ci/run).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("LLM_POLICY_TEST_BASE_IMAGE", "llm-policy-base:bookworm")
IMAGE = "llm-policy:test"
LABEL = "llm-policy-test"  # on every container and volume: .ci/run removes what is left
MACHINE_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def missing(problem: str) -> None:
    """Skip the test, or fail it in CI, where a missing tool is a broken CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def docker_daemon() -> None:
    if shutil.which("docker") is None:
        missing("docker is not installed (apt-get install docker.io)")
    done = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        missing(f"no Docker daemon answers: {done.stderr.strip()[:300]}")


@pytest.fixture(scope="session")
def image(docker_daemon: None) -> str:
    """The image of this working tree, tagged llm-policy:test."""
    subprocess.run([str(ROOT / "deploy" / "base-image.sh"), BASE_IMAGE], check=True, timeout=900)
    ca = ROOT / "deploy" / "build-ca" / "machine.crt"
    if MACHINE_CA.exists():
        shutil.copyfile(MACHINE_CA, ca)
    started = time.monotonic()
    done = subprocess.run(
        [
            "docker",
            "build",
            "--network",
            "host",
            "-f",
            "deploy/Dockerfile",
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "-t",
            IMAGE,
            ".",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"docker build failed:\n{done.stdout[-6000:]}\n{done.stderr}")
    size = int(docker("image", "inspect", "-f", "{{.Size}}", IMAGE))
    print(f"image {IMAGE}: built in {time.monotonic() - started:.0f} s, {size / 1e6:.0f} MB")
    return IMAGE


class Containers:
    """Containers and volumes made by one test, all removed at its end."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.volumes: list[str] = []

    def volume(self) -> str:
        name = f"llmp-test-{uuid.uuid4().hex[:10]}"
        docker("volume", "create", "--label", LABEL, name)
        self.volumes.append(name)
        return name

    def run(self, image: str, *args: str, env: dict[str, str], volume: str | None = None) -> str:
        name = f"llmp-test-{uuid.uuid4().hex[:10]}"
        flags = ["--name", name, "--label", LABEL, "--network", "host", "--read-only"]
        flags += ["--tmpfs", "/tmp"]
        if volume is not None:
            flags += ["-v", f"{volume}:/var/lib/llm-policy"]
        for key, value in env.items():
            flags += ["-e", f"{key}={value}"]
        docker("run", "-d", *flags, image, *args)
        self.names.append(name)
        return name

    def close(self) -> None:
        for name in self.names:
            docker("rm", "-f", "-v", name, check=False)  # -v: its anonymous volumes too
        for volume in self.volumes:
            docker("volume", "rm", "-f", volume, check=False)


@pytest.fixture
def containers(docker_daemon: None) -> Iterator[Containers]:
    made = Containers()
    try:
        yield made
    finally:
        made.close()


def logs(name: str) -> str:
    """A container's output, stdout and stderr together."""
    done = subprocess.run(
        ["docker", "logs", name], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout + done.stderr
