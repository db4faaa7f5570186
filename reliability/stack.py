"""The processes a reliability run starts and stops: its own PostgreSQL and Redis (never the
shared ones on 5432/6379), the stall proxy in front of them, and the servers under test.

Every process listens on 127.0.0.1 only, on a free port, and is stopped by `Stack.close()`
(by its own pid or process group, never by name).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
SHARED_PORTS = {5432, 6379}


def free_port() -> int:
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in SHARED_PORTS:
            return port


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (/usr/lib/postgresql/*/bin)")
    return found[-1]


def _as_postgres(args: list[str]) -> list[str]:
    # The server refuses to run as root: run it as the postgres user when we are root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


class OwnPostgres:
    """A PostgreSQL of our own on a temp dir and a free port (TCP 127.0.0.1, trust auth)."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "pg"
        self.port = free_port()
        self.started = False

    def init(self) -> None:
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(self.dir.parent, 0o755)  # noqa: S103 - the postgres user reaches its data dir
        subprocess.run(
            _as_postgres(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(self.dir),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )
        with (self.dir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = on\nmax_connections = 200\n"
            )

    def start(self) -> None:
        subprocess.run(
            _as_postgres(
                [_pg_bin("pg_ctl"), "-D", str(self.dir), "-l", str(self.dir / "log"), "-w", "start"]
            ),
            check=True,
            capture_output=True,
        )
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        if not self.started:
            return
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.dir), "-m", mode, "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        self.started = False

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')


class OwnRedis:
    """A redis-server of our own on a free port, no persistence (like a crash: data gone)."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.log = base / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    client.close()
                    return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # like a crash
            self.proc.wait()
        self.proc = None


class Proxies:
    """reliability/tcp_proxy.py in its own process: `pg` and `redis` ports, one control port."""

    def __init__(self, base: Path, pg_port: int, redis_port: int) -> None:
        self.control = free_port()
        self.pg = free_port()
        self.redis = free_port()
        self.log = base / "proxy.log"
        self._targets = (pg_port, redis_port)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "tcp_proxy.py"),
                    "--control",
                    str(self.control),
                    f"pg={self.pg}:{self._targets[0]}",
                    f"redis={self.redis}:{self._targets[1]}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not self.log.read_text().strip():
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def pids(self) -> list[int]:
        """The process and its descendants (its workers and theirs)."""
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            for task in glob.glob(f"/proc/{pid}/task/*/children"):
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in Path(task).read_text().split()]
        return out

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def fds(self) -> tuple[int, int]:
        """(open file descriptors, of which sockets) of the process and its workers."""
        total = sockets = 0
        for pid in self.pids():
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    total += 1
                    with contextlib.suppress(OSError):
                        sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            except OSError:
                pass
        return total, sockets

    def sockets_to(self, port: int) -> int:
        """How many of the process's and its workers' fds are TCP connections to
        127.0.0.1:`port` (e.g. the database pools' connections through the proxy)."""
        inodes: set[str] = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    cols = line.split()
                    if int(cols[2].rpartition(":")[2], 16) == port:
                        inodes.add(f"socket:[{cols[9]}]")
        count = 0
        for pid in self.pids():
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        count += os.readlink(f"/proc/{pid}/fd/{fd}") in inodes
            except OSError:
                pass
        return count

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                return None
        return self.proc.returncode


POLICIES = """\
metadata: {id: rel-deny}
config: {cache_ttl_seconds: 0}
rules:
  - id: mallory
    condition: "user.id == 'mallory'"
    action: {decision: deny, reason: blocked user}
---
metadata: {id: rel-budget}
config: {fail_open: true, cache_ttl_seconds: 0}
rules:
  - id: over-budget
    condition: 'budget.spent("team:" + team.id, "day") > 1000000000'
    action: {decision: deny, reason: over budget}
"""


class Backends:
    """One PostgreSQL and one Redis of our own for a whole run, shared by its deployments
    one after the other (each Stack gets a database of its own): initdb and a start per
    deployment cost seconds each on a loaded machine, and a fault restarts them anyway."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="llm-policy-rel-backends-"))
        self.pg = OwnPostgres(self.base)
        self.redis = OwnRedis(self.base)
        self._databases = 0

    def start(self) -> None:
        os.chmod(self.base, 0o755)  # noqa: S103 - the postgres user reaches its data dir
        self.pg.init()
        self.pg.start()
        self.redis.start()

    def new_database(self, deployment: str) -> str:
        self._databases += 1
        name = f"llm_policy_{deployment}_{self._databases}"
        self.pg.create_database(name)
        return name

    def stop(self) -> None:
        self.redis.stop()
        self.pg.stop("fast")
        if os.environ.get("RELIABILITY_KEEP") != "1":
            shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Stack:
    """One deployment (single or cluster) under test, on its own PostgreSQL and Redis, or
    on a database of the run's shared `backends`."""

    deployment: str
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="llm-policy-rel-")))
    workers: int = 2
    backends: Backends | None = None
    database: str = "llm_policy"
    pg: OwnPostgres | None = None
    redis: OwnRedis | None = None
    proxies: Proxies | None = None
    http: Server | None = None
    grpc: Server | None = None
    token: str = ""
    #: with `audit`, a local Governance (policy_integrations.receiver ThreadedReceiver) the
    #: servers' audit outboxes deliver to (the faults count lost audit events; the soak not)
    audit: bool = False
    governance: Any = None

    @property
    def http_url(self) -> str:
        assert self.http is not None
        return f"http://127.0.0.1:{self.http.port}"

    @property
    def direct_database_url(self) -> str:
        assert self.pg is not None
        return self.pg.url(self.database)

    def start(self) -> None:
        os.chmod(self.base, 0o755)  # noqa: S103 - the postgres user reaches its data dir
        if self.backends is not None:
            self.pg, self.redis = self.backends.pg, self.backends.redis
            self.database = self.backends.new_database(self.deployment)
        else:
            self.pg = OwnPostgres(self.base)
            self.pg.init()
            self.pg.start()
            self.pg.create_database(self.database)
            self.redis = OwnRedis(self.base)
            self.redis.start()
        self.proxies = Proxies(self.base, self.pg.port, self.redis.port)
        self.proxies.start()
        if self.audit:
            from policy_integrations.receiver import ThreadedReceiver

            self.governance = ThreadedReceiver()
            self.governance.__enter__()
        seed = self.base / "seed.yaml"
        seed.write_text(POLICIES)
        env = self._env()
        self.token = subprocess.run(
            [sys.executable, "-m", "policy_cli", "token"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout.strip()
        self.http = self._serve("http", ["serve"], seed)
        self.grpc = self._serve("grpc", ["grpc", "serve"], seed)
        self._wait_http()
        self._wait_grpc()

    def _env(self, **extra: str) -> dict[str, str]:
        assert self.proxies is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_POLICY_")}
        env |= {
            "LLM_POLICY_ENV": "development",
            "LLM_POLICY_DEPLOYMENT": self.deployment,
            "LLM_POLICY_DATABASE_URL": (
                f"postgresql://postgres@127.0.0.1:{self.proxies.pg}/{self.database}"
            ),
            "LLM_POLICY_RATE_LIMITS": "",
        }
        if self.deployment == "cluster":
            env["LLM_POLICY_REDIS_URL"] = f"redis://127.0.0.1:{self.proxies.redis}/0"
        if self.governance is not None:
            env["LLM_POLICY_GOVERNANCE_URL"] = self.governance.url
        return env | extra

    def audit_keys(self) -> list[str | None]:
        """The Idempotency-Keys (request ids) the local Governance received, repeats included."""
        if self.governance is None:
            return []
        return list(self.governance.receiver.keys("/api/v1/audit/log"))

    def _serve(self, name: str, command: list[str], seed: Path) -> Server:
        port = free_port()
        data = self.base / f"data-{name}"
        data.mkdir()
        env = self._env(
            LLM_POLICY_DATA_DIR=str(data),
            LLM_POLICY_SEED_POLICIES=str(seed),
            LLM_POLICY_WORKERS=str(self.workers),
            **(
                {"LLM_POLICY_PORT": str(port)}
                if name == "http"
                else {"LLM_POLICY_GRPC_PORT": str(port)}
            ),
        )
        # stderr carries the logs (every line JSON, issue 13); stdout the banner for people.
        log = self.base / f"{name}.log"
        with log.open("wb") as err, log.with_suffix(".out").open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "policy_cli", *command],
                env=env,
                stdout=out,
                stderr=err,
                cwd=ROOT,
                start_new_session=True,
            )
        if name == "grpc":
            # The HTTP server seeds the store first, mostly; when gRPC wins, seeding skips
            # the policies the other created (packages/cli/tests/test_cli_seed.py). The
            # soak of one CI run died here before that: "policy 'rel-deny' already exists".
            time.sleep(1)
        return Server(name=name, proc=proc, log=log, port=port)

    def _wait_http(self, timeout: float = 120) -> None:
        assert self.http is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.http.proc.poll() is not None:
                raise RuntimeError(f"the HTTP server exited:\n{self.http.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.http_url + "/ready", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError("the HTTP server did not become ready")

    def _wait_grpc(self, timeout: float = 120) -> None:
        import asyncio

        from grpclib.client import Channel
        from grpclib.health.v1.health_grpc import HealthStub
        from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

        assert self.grpc is not None
        port = self.grpc.port

        async def check() -> bool:
            channel = Channel("127.0.0.1", port)
            try:
                reply = await HealthStub(channel).Check(HealthCheckRequest(service=""), timeout=3)
                return bool(reply.status == HealthCheckResponse.SERVING)
            finally:
                channel.close()

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.grpc.proc.poll() is not None:
                raise RuntimeError(f"the gRPC server exited:\n{self.grpc.log.read_text()[-3000:]}")
            try:
                if asyncio.run(check()):
                    return
            except (OSError, TimeoutError):
                pass
            time.sleep(0.3)
        raise RuntimeError("the gRPC server did not become SERVING")

    def close(self) -> dict[str, object]:
        """Stop everything; returns the servers' exit codes and whether their logs are all JSON."""
        out: dict[str, object] = {}
        for server in (self.http, self.grpc):
            if server is not None:
                out[f"{server.name}_exit"] = server.stop()
                out[f"{server.name}_non_json_lines"] = _non_json_lines(server.log)
        if self.governance is not None:
            self.governance.__exit__(None, None, None)
        if self.proxies is not None:
            self.proxies.stop()
        if self.backends is None:  # shared ones are the run's to stop
            if self.redis is not None:
                self.redis.stop()
            if self.pg is not None:
                self.pg.stop("fast")
        if os.environ.get("RELIABILITY_KEEP") != "1":
            shutil.rmtree(self.base, ignore_errors=True)
        return out


def _non_json_lines(log: Path) -> int:
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError:
            count += 1
    return count
