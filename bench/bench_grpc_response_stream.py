"""JudgeResponseStream against the gRPC API: a 2,000-token completion in 4-character deltas.

The server runs in its own process with the object graph of `llm-policy grpc
serve` (bootstrap over the memory deployment, seeded with
examples/policies/response.yaml: credential patterns, PII redaction, tool and
cost rules); this process is the client. The completion and its scenarios are
bench/bench_stream.py's (~8,000 characters of prose, 2,000 deltas). Two ways
of driving a stream:

- lockstep: send a delta, wait for its answer, then the next (a gateway that
  releases each delta before reading the model's next one): deltas/s, and the
  round trip of a delta (p50/p99), which is the latency the judge adds to
  each delta the client receives;
- pipelined: the deltas are written as they come while the answers are read
  concurrently (a gateway that does not wait): deltas/s.

Every stream is checked: released text + the final rest equals the decision's
text (or the stream was denied). Server CPU per delta from /proc.

    uv run --frozen python bench/bench_grpc_response_stream.py [--streams 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_stream import CONTEXT, completion  # noqa: E402

POLICIES = ROOT / "examples" / "policies" / "response.yaml"
SECRET = "bench-secret-0123456789-abcdefghijklmnop"
PATH = "/llm_policy.v1.PolicyService/JudgeResponseStream"


async def _serve(port_file: str) -> None:
    from policy_cli.bootstrap import bootstrap
    from policy_cli.settings import load_settings
    from policy_cli.testing import grpc_server

    environ = {
        "LLM_POLICY_DEPLOYMENT": "memory",
        "LLM_POLICY_SEED_POLICIES": str(POLICIES),
        "LLM_POLICY_JWT_SECRET": SECRET,
    }
    settings = load_settings(environ, serving=True)
    async with bootstrap(settings) as services:
        server = grpc_server(services, settings)
        await server.start("127.0.0.1", 0)
        Path(port_file).write_text(str(server.port))  # noqa: ASYNC240 - once, at start-up
        stop = asyncio.Event()
        asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)
        await stop.wait()
        await server.drain()


def _token() -> str:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    now = int(time.time())
    claims = {"sub": "bench", "roles": ["evaluator"], "iat": now, "exp": now + 3600}
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(SECRET))


class _Raw:
    """A grpclib codec sending and receiving serialised messages as they are."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


def _messages(text: str) -> tuple[bytes, list[bytes], bytes]:
    from policy_grpc._generated.google.protobuf import Struct
    from policy_grpc._generated.llm_policy.v1 import (
        ResponseStreamClose,
        ResponseStreamMessage,
        ResponseStreamRequest,
    )

    opening = ResponseStreamMessage(
        request=ResponseStreamRequest(request_id="b1", context_json=json.dumps(CONTEXT).encode())
    )
    deltas = [bytes(ResponseStreamMessage(delta=text[i : i + 4])) for i in range(0, len(text), 4)]
    usage = Struct.from_dict({"prompt_tokens": 200, "completion_tokens": 2_000})
    close = ResponseStreamMessage(close=ResponseStreamClose(usage=usage))
    return bytes(opening), deltas, bytes(close)


def _check(text: str, answers: list[bytes]) -> str:
    from policy_grpc._generated.llm_policy.v1 import ResponseStreamAnswer

    decoded = [ResponseStreamAnswer.FromString(a) for a in answers]
    last = decoded[-1]
    assert last.decision is not None
    released = "".join(a.released for a in decoded)
    if last.decision.decision == "deny":
        assert text.startswith(released)
        return "deny"
    assert last.final
    passed = text
    if last.decision.modifications is not None:
        passed = last.decision.modifications.to_dict().get("response.text", text)
    assert released == passed, "released text differs from the decision's"
    return last.decision.decision


def _has_decision(answer: bytes) -> bool:
    """Whether an answer holds more than `released` (field 1): a delta's deny."""
    from policy_grpc._protobuf import varint

    if not answer or answer[0] != 0x0A:
        return bool(answer)
    size, pos = varint(answer, 1)
    return pos + size < len(answer)


async def _lockstep(channel: Any, token: str, frames: tuple[bytes, list[bytes], bytes]) -> Any:
    from grpclib.const import Cardinality

    opening, deltas, close = frames
    answers: list[bytes] = []
    trips: list[int] = []
    async with channel.request(
        PATH, Cardinality.STREAM_STREAM, bytes, bytes, metadata={"authorization": f"Bearer {token}"}
    ) as stream:
        await stream.send_message(opening)
        t0 = time.perf_counter_ns()
        denied = False
        for d in deltas:
            s = time.perf_counter_ns()
            await stream.send_message(d)
            answer = await stream.recv_message()
            trips.append(time.perf_counter_ns() - s)
            answers.append(answer)
            if _has_decision(answer):  # a deny: the call ends
                denied = True
                break
        if not denied:
            await stream.send_message(close, end=True)
            answers.append(await stream.recv_message())
        else:
            await stream.end()
        elapsed = time.perf_counter_ns() - t0
        while await stream.recv_message() is not None:
            pass
    return elapsed, trips, answers


async def _pipelined(channel: Any, token: str, frames: tuple[bytes, list[bytes], bytes]) -> Any:
    from grpclib.const import Cardinality

    opening, deltas, close = frames
    answers: list[bytes] = []
    async with channel.request(
        PATH, Cardinality.STREAM_STREAM, bytes, bytes, metadata={"authorization": f"Bearer {token}"}
    ) as stream:
        await stream.send_message(opening)
        t0 = time.perf_counter_ns()

        async def write() -> None:
            for d in deltas:
                await stream.send_message(d)
            await stream.send_message(close, end=True)

        writer = asyncio.create_task(write())
        while (answer := await stream.recv_message()) is not None:
            answers.append(answer)
        elapsed = time.perf_counter_ns() - t0
        writer.cancel()
    return elapsed, answers


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _client(port: int, streams: int, server_pid: int) -> None:
    from grpclib.client import Channel

    token = _token()
    channel = Channel("127.0.0.1", port, codec=_Raw())  # type: ignore[arg-type]
    scenarios = {
        "clean prose": completion(),
        "PII at the end": completion(tail=" Contact ann@example.com."),
        "key at the middle": completion(4_000) + " sk-" + "a" * 32 + " " + completion(3_960),
    }
    try:
        for name, text in scenarios.items():
            frames = _messages(text)
            n = len(frames[1])
            await _lockstep(channel, token, frames)  # warm-up
            walls: list[int] = []
            trips: list[int] = []
            cpu0 = _cpu_seconds(server_pid)
            sent = 0
            outcome = "?"
            for _ in range(streams):
                elapsed, t, answers = await _lockstep(channel, token, frames)
                outcome = _check(text, answers)
                walls.append(elapsed)
                trips.extend(t)
                sent += len(t)
            cpu = _cpu_seconds(server_pid) - cpu0
            pipes: list[int] = []
            for _ in range(streams):
                elapsed, answers = await _pipelined(channel, token, frames)
                _check(text, answers)
                pipes.append(elapsed)
            trips.sort()
            per_stream = sent / streams
            print(
                f"{name:<18} {outcome:<5} {n} deltas ({per_stream:.0f} sent)  lockstep "
                f"{per_stream / (statistics.median(walls) / 1e9):>8,.0f} deltas/s  "
                f"round trip p50 {trips[len(trips) // 2] / 1000:.0f} us "
                f"p99 {trips[int(len(trips) * 0.99)] / 1000:.0f} us  "
                f"server CPU {cpu / sent * 1e6:.0f} us/delta  pipelined "
                f"{per_stream / (statistics.median(pipes) / 1e9):>8,.0f} deltas/s"
            )
    finally:
        channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=20, help="streams per scenario and mode")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    port_file = Path(f"/tmp/bench_grpc_response_port_{os.getpid()}")
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port_file)], stdin=subprocess.PIPE
    )
    try:
        for _ in range(300):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.1)
        port = int(port_file.read_text())
        print(f"load average: {os.getloadavg()[0]:.2f}; policy {POLICIES.relative_to(ROOT)}")
        asyncio.run(_client(port, args.streams, server.pid))
    finally:
        assert server.stdin is not None
        server.stdin.write(b"x")
        server.stdin.close()
        server.wait(timeout=60)
        port_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
