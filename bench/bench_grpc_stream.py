"""One bidirectional EvaluatePolicyStream of N requests against the gRPC API: decisions/s.

The server runs in its own process with the object graph of `llm-policy grpc
serve` (bootstrap over the memory deployment, seeded with the reference
policies, bearer JWT checked once per stream); this process is the client. The client keeps at most `--window`
requests unanswered and writes them in chunks of `--chunk` messages per
HTTP/2 DATA frame, like a gateway multiplexing its callers onto one stream.
Every answer is checked: same order, same request_id.

    uv run --frozen python bench/bench_grpc_stream.py [--requests 100000] [--profile FILE]

Workload: bench/reference_policies.yaml + bench/reference_contexts.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

POLICIES = ROOT / "bench" / "reference_policies.yaml"
CONTEXTS = ROOT / "bench" / "reference_contexts.json"
SECRET = "bench-secret-0123456789-abcdefghijklmnop"


def workload() -> tuple[list[dict[str, Any]], str]:
    """(contexts, description): the reference workload (its policies seed the server)."""
    items = json.loads(CONTEXTS.read_text())
    contexts = [i["context"] if isinstance(i, dict) and "context" in i else i for i in items]
    return contexts, "reference workload (bench/reference_*)"


# --- server process -------------------------------------------------------------------


class _ConstantEvaluation:
    """`--service null`: a fixed decision, to measure the gRPC layer alone."""

    def __init__(self, policy_set: str) -> None:
        from policy_core.model import Decision
        from policy_core.services import EvaluationResult

        self._result = EvaluationResult
        self._decision = Decision(
            decision="allow", allowed=True, matched_policies=("p",), policy_set=policy_set
        )

    async def evaluate(self, request: Any) -> Any:
        return self._result(decision=self._decision, request_id=request.request_id or "")


async def _serve(port_file: str, profile: str | None, service: str) -> None:
    """`llm-policy grpc serve`'s object graph: bootstrap over the memory deployment, seeded."""
    import dataclasses

    from policy_cli.bootstrap import bootstrap
    from policy_cli.testing import grpc_server

    settings = server_settings()
    async with bootstrap(settings) as services:
        if service == "null":
            constant = _ConstantEvaluation(services.holder.current.policy_set())
            services = dataclasses.replace(services, evaluation=constant)
        server = grpc_server(services, settings)
        await server.start("127.0.0.1", 0)
        Path(port_file).write_text(str(server.port))  # noqa: ASYNC240 - once, at start-up
        stop = asyncio.Event()
        asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
            await stop.wait()
            prof.disable()
            prof.dump_stats(profile)
        else:
            await stop.wait()
        await server.drain()


def server_settings() -> Any:
    """The settings `llm-policy grpc serve` would load from this environment."""
    from policy_cli.settings import load_settings

    environ = {
        "LLM_POLICY_DEPLOYMENT": "memory",
        "LLM_POLICY_SEED_POLICIES": str(POLICIES),
        "LLM_POLICY_JWT_SECRET": SECRET,
    }
    return load_settings(environ, serving=True)


def _token() -> str:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    now = int(time.time())
    claims = {"sub": "bench", "roles": ["evaluator"], "iat": now, "exp": now + 3600}
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(SECRET))


# --- client -----------------------------------------------------------------------------


def _requests(contexts: list[dict[str, Any]], n: int) -> list[bytes]:
    from policy_grpc._generated.llm_policy.v1 import (
        EvaluatePolicyRequest,
        EvaluatePolicyStreamRequest,
    )

    bodies = [json.dumps(c, separators=(",", ":")).encode() for c in contexts]
    out = []
    for i in range(n):
        message = EvaluatePolicyStreamRequest(
            request=EvaluatePolicyRequest(request_id=f"r{i}", context_json=bodies[i % len(bodies)])
        )
        data = bytes(message)
        out.append(b"\x00" + len(data).to_bytes(4, "big") + data)
    return out


def _request_id(answer: bytes) -> str:
    from policy_grpc._generated.llm_policy.v1 import EvaluatePolicyStreamResponse

    decision = EvaluatePolicyStreamResponse.FromString(answer).decision
    assert decision is not None
    return decision.request_id


async def _client(
    port: int, frames: list[bytes], window: int, chunk: int
) -> tuple[float, dict[str, int]]:
    from grpclib.client import Channel
    from grpclib.const import Cardinality
    from policy_grpc._generated.llm_policy.v1 import EvaluatePolicyStreamResponse
    from policy_grpc._transport import RawMessage

    channel = Channel("127.0.0.1", port)
    answered = 0
    progressed = asyncio.Event()
    counts: dict[str, int] = {}
    n = len(frames)
    path = "/llm_policy.v1.PolicyService/EvaluatePolicyStream"
    start = time.perf_counter()
    metadata = {"authorization": f"Bearer {_token()}"}
    async with channel.request(
        path, Cardinality.STREAM_STREAM, RawMessage, RawMessage, metadata=metadata
    ) as stream:
        await stream.send_request()
        h2 = stream._stream

        async def write() -> None:
            sent = 0
            while sent < n:
                while sent - answered >= window:
                    progressed.clear()
                    await progressed.wait()
                k = min(chunk, n - sent, window - (sent - answered))
                await h2.send_data(b"".join(frames[sent : sent + k]))
                sent += k
            await stream.end()

        writer = asyncio.create_task(write())
        await stream.recv_initial_metadata()
        while answered < n:
            header = await h2.recv_data(5)
            if not header:
                break
            body = await h2.recv_data(int.from_bytes(header[1:5], "big"))
            if answered % 997 == 0:  # spot-check order and ids without slowing the client
                decision = EvaluatePolicyStreamResponse.FromString(body).decision
                assert decision is not None
                assert decision.request_id == f"r{answered}"
                counts[decision.decision] = counts.get(decision.decision, 0) + 1
            answered += 1
            if answered % 64 == 0 or answered == n:
                progressed.set()
        elapsed = time.perf_counter() - start
        await writer
        await stream.recv_trailing_metadata()
    channel.close()
    if answered != n:
        raise SystemExit(f"only {answered} of {n} answers")
    return elapsed, counts


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=1024, help="unanswered requests at most")
    parser.add_argument("--chunk", type=int, default=128, help="request messages per DATA frame")
    parser.add_argument("--profile", help="write the server's cProfile stats to this file")
    parser.add_argument(
        "--service",
        choices=["real", "null"],
        default="real",
        help="real: EvaluationService (engine + audit log); null: a constant decision",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.profile, args.service))
        return
    contexts, description = workload()
    port_file = Path(f"/tmp/bench_grpc_port_{os.getpid()}")
    cmd = [sys.executable, __file__, "--serve", str(port_file), "--service", args.service]
    if args.profile:
        cmd += ["--profile", args.profile]
    server = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    try:
        for _ in range(300):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.1)
        port = int(port_file.read_text())
        frames = _requests(contexts, args.requests)
        # Warm-up stream (imports, caches), then the measured one.
        asyncio.run(_client(port, frames[:2000], args.window, args.chunk))
        cpu0, client0 = _cpu_seconds(server.pid), time.process_time()
        elapsed, counts = asyncio.run(_client(port, frames, args.window, args.chunk))
        cpu = _cpu_seconds(server.pid) - cpu0
        client_cpu = time.process_time() - client0
    finally:
        assert server.stdin is not None
        server.stdin.write(b"x")
        server.stdin.close()
        server.wait(timeout=60)
        port_file.unlink(missing_ok=True)
    n = args.requests
    print(f"workload: {description}; {len(contexts)} distinct contexts; service {args.service}")
    print(f"one stream, {n} requests, window {args.window}, chunk {args.chunk}")
    print(f"decisions/s: {n / elapsed:,.0f}  (wall {elapsed:.2f} s)")
    print(f"server CPU: {cpu:.2f} s = {cpu / n * 1e6:.1f} us per decision")
    print(f"client CPU: {client_cpu:.2f} s = {client_cpu / n * 1e6:.1f} us per decision")
    print(f"sampled decisions: {counts}")


if __name__ == "__main__":
    main()
