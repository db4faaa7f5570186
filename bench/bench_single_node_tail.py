"""The single-node default's tail under a fixed offered load (issue 16), and the log's completeness.

    uv run --frozen python bench/bench_single_node_tail.py                 # 5,000/s for 30 s
    uv run --frozen python bench/bench_single_node_tail.py --rate 5000 --duration 30 --warmup 5
    uv run --frozen python bench/bench_single_node_tail.py --server-python /other/checkout/.venv/bin/python

The server is the single-node default as `make run` starts it: `llm-policy serve`
(granian, one worker) with LLM_POLICY_DEPLOYMENT=single and no database URL, so
it runs its embedded PostgreSQL in a fresh data dir, with the PostgreSQL
decision log on. It is seeded with the 20-rule reference gate
(bench/reference_policies.yaml) set to audit every decision, and asked the
three reference contexts in turn, each request with a request id of its own.

The load is open-loop (wrk2-style): a generator in a process of its own sends
request i at `start + i / rate` whether or not earlier answers came back, over
keep-alive HTTP/1.1 connections (a new one when all are busy, up to
`--max-connections`; beyond that requests wait in a backlog). Latency is from
the scheduled send time, so a stall of the server shows in full (no
coordinated omission). A request unanswered `--timeout` seconds after its
scheduled time is a timeout (its connection is closed).

Afterwards the decision log must be complete: every acknowledged request id
in `decision_log` (polled until it is, or until the count stops growing for
20 s). Figures go to stdout as one Markdown table row; docs/benchmarks.md
("Single-node tail") records them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SECRET = "bench-secret-0123456789-abcdefghijklmnop"
POLICIES = BENCH / "reference_policies.yaml"
CONTEXTS = BENCH / "reference_contexts.json"
PREFIX = "tail"
_TICK = 0.001  # the generator's scheduling step, s


# --- the generator (runs in a process of its own: `--generate`) ---------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight."""

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.inflight: tuple[int, float] | None = None  # (request number, scheduled time)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.gen.ready(self)

    def send(self, n: int, scheduled: float) -> None:
        assert self.transport is not None
        self.inflight = (n, scheduled)
        self.transport.write(self.gen.request(n))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower() + b"\r\n"
            at = head.find(b"content-length:")
            length = int(head[at + 15 : head.find(b"\r\n", at)]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            status = int(head[9:12])
            del self.buf[: end + 4 + length]
            self.gen.answered(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost(self)


class _Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = asyncio.get_running_loop()
        self.rate = float(args.rate)
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.opening = 0
        self.backlog: list[tuple[int, float]] = []
        self.measure_from = 0  # requests numbered below this are warm-up
        self.latencies: list[float] = []
        self.acked: list[int] = []
        self.statuses: dict[int, int] = {}
        self.timeouts = self.errors = 0
        self.max_conns_used = 0
        contexts = [i.get("context", i) for i in json.loads(CONTEXTS.read_text())]
        self.bodies = [
            (json.dumps({"context": c}, separators=(",", ":"))[:-1] + ',"request_id":"').encode()
            for c in contexts
        ]
        self.head = (
            f"POST /api/v1/evaluate HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
            f"Authorization: Bearer {args.token}\r\nContent-Type: application/json\r\n"
        ).encode()

    def request(self, n: int) -> bytes:
        body = self.bodies[n % len(self.bodies)] + f'{PREFIX}-{n}"}}'.encode()
        return self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    # connection events
    def ready(self, conn: _Conn) -> None:
        self.opening -= 1
        self.conns.add(conn)
        self.max_conns_used = max(self.max_conns_used, len(self.conns))
        self._next(conn)

    def answered(self, conn: _Conn, status: int) -> None:
        assert conn.inflight is not None
        n, scheduled = conn.inflight
        conn.inflight = None
        if n >= self.measure_from:
            self.latencies.append(time.monotonic() - scheduled)
            self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.acked.append(n)
        self._next(conn)

    def lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.inflight is not None:
            n = conn.inflight[0]
            conn.inflight = None
            if n >= self.measure_from:
                self.errors += 1

    def _next(self, conn: _Conn) -> None:
        if self.backlog:
            conn.send(*self.backlog.pop(0))
        else:
            self.idle.append(conn)

    def _open(self) -> None:
        self.opening += 1

        async def connect() -> None:
            try:
                await self.loop.create_connection(lambda: _Conn(self), "127.0.0.1", self.args.port)
            except OSError:
                self.opening -= 1
                self.errors += 1

        self.loop.create_task(connect())

    def submit(self, n: int, scheduled: float) -> None:
        if self.idle:
            self.idle.pop().send(n, scheduled)
            return
        self.backlog.append((n, scheduled))
        if len(self.conns) + self.opening < self.args.max_connections:
            self._open()

    def expire(self) -> None:
        """Requests unanswered `timeout` s after their schedule are timeouts."""
        limit = time.monotonic() - self.args.timeout
        for conn in list(self.conns):
            if conn.inflight is not None and conn.inflight[1] < limit:
                if conn.inflight[0] >= self.measure_from:
                    self.timeouts += 1
                conn.inflight = None
                assert conn.transport is not None
                conn.transport.abort()
        while self.backlog and self.backlog[0][1] < limit:
            n, _ = self.backlog.pop(0)
            if n >= self.measure_from:
                self.timeouts += 1

    async def run(self) -> dict[str, Any]:
        args = self.args
        for _ in range(args.connections):
            self._open()
        await asyncio.sleep(0.5)
        warm = int(args.warmup * self.rate)
        total = warm + int(args.duration * self.rate)
        self.measure_from = warm
        start = time.monotonic() + 0.05
        sent = 0
        next_expiry = start
        while sent < total:
            now = time.monotonic()
            due = min(total, int((now - start) * self.rate) + 1)
            while sent < due:
                self.submit(sent, start + sent / self.rate)
                sent += 1
            if now >= next_expiry:
                self.expire()
                next_expiry = now + 0.1
            # Sleep until the next request is due, but at least one tick: uvloop's timers
            # count whole milliseconds, and a shorter sleep returns at once (the loop
            # span, and the generator took most of a core at 3,000/s). Sent up to a tick
            # late, a request's latency still counts from its scheduled time.
            await asyncio.sleep(max(_TICK, start + sent / self.rate - time.monotonic()))
        offered_s = time.monotonic() - start
        end = time.monotonic() + args.timeout + 0.5
        while (self.backlog or any(c.inflight for c in self.conns)) and time.monotonic() < end:
            self.expire()
            await asyncio.sleep(0.05)
        self.expire()
        for conn in list(self.conns):
            assert conn.transport is not None
            conn.transport.close()
        lat = sorted(self.latencies)

        def q(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

        return {
            "offered_per_s": total / offered_s,
            "sent": total,
            "measured": total - warm,
            "answered": len(lat),
            "p50_ms": q(0.50),
            "p99_ms": q(0.99),
            "p999_ms": q(0.999),
            "max_ms": lat[-1] * 1000 if lat else float("nan"),
            "timeouts": self.timeouts,
            "errors": self.errors,
            "statuses": self.statuses,
            "connections": self.max_conns_used,
            "acked_ids": [f"{PREFIX}-{n}" for n in self.acked],  # warm-up included
        }


def generate(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> dict[str, Any]:
        return await _Generator(args).run()

    result = asyncio.run(main())
    Path(args.out).write_text(json.dumps(result))


# --- the server and the run ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _policy_file(path: Path) -> Path:
    """The reference gate, auditing every decision (so that every answer is a log record)."""
    text = POLICIES.read_text().replace("audit: decisions_other_than_allow", "audit: all")
    assert "audit: all" in text
    path.write_text(text)
    return path


def _stored(url: str, ids: set[str], wait: float = 120) -> tuple[int, int]:
    """(acknowledged ids found in decision_log, rows of ours there), polled until all are
    found or the count stops growing for 20 s."""
    import psycopg

    deadline = time.monotonic() + wait
    found: set[str] = set()
    last_growth = time.monotonic()
    rows = 0
    while time.monotonic() < deadline:
        with psycopg.connect(url) as conn:
            got = conn.execute(
                "SELECT request_id FROM decision_log WHERE request_id LIKE %s", (PREFIX + "-%",)
            ).fetchall()
        now = {r[0] for r in got}
        rows = len(got)
        if len(now) > len(found):
            last_growth = time.monotonic()
        found = now
        if ids <= found or time.monotonic() - last_growth > 20:
            break
        time.sleep(1)
    return len(ids & found), rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench_http import _cpu_seconds
    from policy_cli.testing import clean_env, serving
    from policy_core.auth import mint_token
    from policy_postgres import EmbeddedPostgres

    token = mint_token(SECRET, subject="bench", roles=["evaluator"], ttl_seconds=3600)
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        env = clean_env(
            LLM_POLICY_DEPLOYMENT=args.deployment,
            LLM_POLICY_DATA_DIR=str(data),
            LLM_POLICY_JWT_SECRET=SECRET,
            LLM_POLICY_LOG_LEVEL="warning",
            LLM_POLICY_WORKERS=str(args.workers),
        )
        python = args.server_python or sys.executable
        command = [python, "-m", "policy_cli", "serve", "--port", str(port),
                   "--seed", str(_policy_file(Path(tmp) / "gate.yaml"))]  # fmt: skip
        if args.server_impl:
            command += ["--server-impl", args.server_impl]
        log = Path(tmp) / "serve.log"
        out = Path(tmp) / "generator.json"
        with serving(command, port=port, env=env, log=log, cwd=ROOT, timeout=180) as srv:
            gen = [sys.executable, __file__, "--generate", "--port", str(port), "--token", token,
                   "--rate", str(args.rate), "--duration", str(args.duration),
                   "--warmup", str(args.warmup), "--timeout", str(args.timeout),
                   "--connections", str(args.connections),
                   "--max-connections", str(args.max_connections), "--out", str(out)]  # fmt: skip
            cpu = _cpu_seconds(srv.proc.pid)
            subprocess.run(gen, check=True)
            cpu = _cpu_seconds(srv.proc.pid) - cpu
            result: dict[str, Any] = json.loads(out.read_text())
            acked = set(result.pop("acked_ids"))
            if args.deployment == "single":
                url = EmbeddedPostgres(data).start()  # the server's own, already running
                found, rows = _stored(url, acked)
            else:  # the memory deployment's log is in the worker: nothing to count afterwards
                found, rows = len(acked), 0
            result |= {"acked": len(acked), "acked_in_log": found, "log_rows": rows}
            result["server_cpu_s"] = cpu
        if args.keep_log:
            Path(args.keep_log).write_text(log.read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=5000, help="offered decisions/s")
    parser.add_argument("--duration", type=float, default=30, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before")
    parser.add_argument("--timeout", type=float, default=2.0, help="a request's deadline, s")
    parser.add_argument("--connections", type=int, default=64, help="opened at the start")
    parser.add_argument("--max-connections", type=int, default=512)
    parser.add_argument(
        "--server-python",
        help="interpreter of another checkout's environment whose `llm-policy serve` is measured"
        " (before/after with one load generator); default: this one",
    )
    parser.add_argument(
        "--deployment",
        choices=["single", "memory"],
        default="single",
        help="memory: the same server without PostgreSQL (the reference the log is measured"
        " against; its log is not checked)",
    )
    parser.add_argument("--workers", type=int, default=1, help="the server's worker processes")
    parser.add_argument(
        "--server-impl",
        choices=["granian", "uvicorn"],
        help="`serve --server-impl` (default: its own)",
    )
    parser.add_argument("--keep-log", help="copy the server's output to this file")
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args)
        return
    one, five, _ = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    r = run(args)
    complete = r["acked"] > 0 and r["acked_in_log"] == r["acked"]
    print(f"started {started}, load average before {one:.2f} / {five:.2f}, {os.cpu_count()} cores")
    print(
        "| offered/s | answered | p50 ms | p99 ms | p99.9 ms | max ms | timeouts | errors "
        "| connections | server CPU µs/decision | log complete |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {r['offered_per_s']:,.0f} | {r['answered']:,} | {r['p50_ms']:.2f} | "
        f"{r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['max_ms']:.1f} | {r['timeouts']} | "
        f"{r['errors']} | {r['connections']} | "
        f"{r['server_cpu_s'] / r['sent'] * 1e6:.0f} | "
        f"{'yes' if complete else 'NO'} ({r['acked_in_log']:,} of {r['acked']:,}) |",
        flush=True,
    )
    print(f"statuses {r['statuses']}")
    sys.exit(0 if complete else 1)


if __name__ == "__main__":
    main()
