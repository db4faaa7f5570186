"""Gateway benchmark (issue 15): what the guarded OpenAI client adds per request and per chunk.

Run: `nice uv run --frozen python bench/bench_gateways.py` (`--requests N`,
`--streams N`, `--chunks N`). Three processes on 127.0.0.1: this one (the
client), the fake OpenAI-compatible upstream
(policy_integrations.gateways.fake_upstream, its own process so that its work
is not charged to the client), and for the remote backend a real `llm-policy
serve` (memory deployment, one worker, the policies seeded from a directory).

The policies: examples/policies/response.yaml (credential patterns, PII
redaction, tool and cost rules: the stream judge's window is 508) and a
request-phase file of four rules (a prompt pattern, a tier cap, PII
redaction of the messages, a warning), so that both phases are judged on
every call and nothing is denied.

Clients, each `openai.AsyncOpenAI` (and `openai.OpenAI` for the sync rows)
on the same upstream: unguarded, guarded with the engine embedded, guarded
against the server. They run interleaved (round-robin, one request each in
turn), so load on the shared machine falls on all of them alike.

- per request: a non-streamed completion (a 60-character answer); median and
  p90 of the wall time per call, and the added median (guarded - unguarded).
- per chunk: a streamed completion of `--chunks` chunks of 4 characters
  (prose, an allow); the added time per chunk = (median guarded stream time
  - median unguarded stream time) / chunks.

Figures: docs/benchmarks.md, "Gateways".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
from policy_cli.testing import clean_env, free_port, llm_policy, serving
from policy_integrations.gateways.guard import Guard
from policy_integrations.gateways.mapping import Identity
from policy_integrations.gateways.openai_client import GuardedAsyncOpenAI, GuardedOpenAI

ROOT = Path(__file__).resolve().parent.parent
REQUEST_POLICY = """\
metadata: {id: bench-gateway-requests}
rules:
  - id: no-forbidden
    condition: "llm.prompt.matches('(?i)ignore (all )?previous instructions')"
    action: {decision: deny, reason: prompt injection}
  - id: free-tier-cap
    condition: "team.tier == 'free' && llm.max_tokens > 1024"
    action: {decision: modify, modifications: {llm.max_tokens: 1024}}
  - id: redact-request-pii
    condition: "llm.contains_pii"
    action: {decision: modify}
    obligations: [{type: redact, fields: [llm.messages], pattern: pii}]
  - id: big
    condition: "llm.max_tokens > 8000"
    action: {decision: warn, reason: a large completion}
"""
SENTENCE = (
    "The quarterly report shows revenue growth across all regions, with the strongest "
    "gains in the enterprise segment and steady retention among smaller customers. "
)
UPSTREAM = """
import asyncio, sys
from policy_integrations.gateways.fake_upstream import FakeUpstream, Reply

async def main():
    text = sys.argv[1]
    chunks = int(sys.argv[2])
    def script(body):
        if body.get("stream"):
            return Reply(text=(text * (chunks * 4 // len(text) + 1))[: chunks * 4], chunk_size=4)
        return Reply(text=text[:60])
    fake = FakeUpstream(script=script)
    await fake.start()
    print(fake.base_url, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""
IDENTITY = Identity(user_id="u-bench", team_id="t-bench", team_tier="pro", roles=("user",))
MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in one line."}]


@contextmanager
def upstream_process(chunks: int) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM, SENTENCE, str(chunks)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def policy_server(policies: Path, data: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    env = clean_env(
        LLM_POLICY_ENV="development",
        LLM_POLICY_DEPLOYMENT="memory",
        LLM_POLICY_DATA_DIR=str(data),
        LLM_POLICY_PORT=str(port),
        LLM_POLICY_SEED_POLICIES=str(policies),
        LLM_POLICY_WORKERS="1",
    )
    with serving(llm_policy("serve"), port=port, env=env, log=data / "server.log", cwd=ROOT) as srv:
        token = subprocess.run(
            llm_policy("token"),
            capture_output=True,
            text=True,
            env=clean_env(LLM_POLICY_ENV="development", LLM_POLICY_DATA_DIR=str(data)),
            check=True,
        ).stdout.strip()
        yield srv.url, token


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.9) - 1]


async def bench_async(
    base_url: str, server: str, token: str, args: argparse.Namespace, policies: Path
) -> dict[str, dict[str, list[float]]]:
    plain = openai.AsyncOpenAI(base_url=base_url, api_key="fake", max_retries=0)
    embedded = GuardedAsyncOpenAI(
        openai.AsyncOpenAI(base_url=base_url, api_key="fake", max_retries=0),
        Guard.embedded(policies),
        identity=IDENTITY,
    )
    remote = GuardedAsyncOpenAI(
        openai.AsyncOpenAI(base_url=base_url, api_key="fake", max_retries=0),
        Guard.remote(server, token=token),
        identity=IDENTITY,
    )
    clients: dict[str, Any] = {"unguarded": plain, "embedded": embedded, "remote": remote}
    out: dict[str, dict[str, list[float]]] = {n: {"request": [], "stream": []} for n in clients}

    async def once(client: Any) -> None:
        result = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=200
        )
        assert result.choices[0].message.content

    async def streamed(client: Any) -> None:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=2000, stream=True
        )
        size = 0
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                size += len(chunk.choices[0].delta.content)
        assert size == args.chunks * 4, size

    async def timed(job: Callable[[Any], Awaitable[None]], client: Any) -> float:
        t0 = time.perf_counter()
        await job(client)
        return time.perf_counter() - t0

    for _ in range(20):  # warm-up: connections, compiled policies, caches
        for client in clients.values():
            await once(client)
            await streamed(client)
    for _ in range(args.requests):
        for name, client in clients.items():
            out[name]["request"].append(await timed(once, client))
    for _ in range(args.streams):
        for name, client in clients.items():
            out[name]["stream"].append(await timed(streamed, client))
    await plain.close()
    await embedded.close()
    await remote.close()
    return out


def bench_sync(
    base_url: str, server: str, token: str, args: argparse.Namespace, policies: Path
) -> dict[str, list[float]]:
    plain = openai.OpenAI(base_url=base_url, api_key="fake", max_retries=0)
    embedded = GuardedOpenAI(
        openai.OpenAI(base_url=base_url, api_key="fake", max_retries=0),
        Guard.embedded(policies),
        identity=IDENTITY,
    )
    remote = GuardedOpenAI(
        openai.OpenAI(base_url=base_url, api_key="fake", max_retries=0),
        Guard.remote(server, token=token),
        identity=IDENTITY,
    )
    clients: dict[str, Any] = {"unguarded": plain, "embedded": embedded, "remote": remote}
    out: dict[str, list[float]] = {n: [] for n in clients}
    for round_ in range(20 + args.requests):
        for name, client in clients.items():
            t0 = time.perf_counter()
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=200)
            if round_ >= 20:
                out[name].append(time.perf_counter() - t0)
    plain.close()
    embedded.close()
    remote.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--chunks", type=int, default=500)
    args = parser.parse_args()
    start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        policies = Path(tmp) / "policies"
        policies.mkdir()
        (policies / "requests.yaml").write_text(REQUEST_POLICY)
        (policies / "response.yaml").write_text(
            (ROOT / "examples" / "policies" / "response.yaml").read_text()
        )
        data = Path(tmp) / "data"
        data.mkdir()
        with (
            upstream_process(args.chunks) as base_url,
            policy_server(policies, data) as (url, token),
        ):
            result = asyncio.run(bench_async(base_url, url, token, args, policies))
            sync = bench_sync(base_url, url, token, args, policies)
    end = time.strftime("%H:%M:%S UTC", time.gmtime())
    load1 = os.getloadavg()
    print(
        f"{start} - {end}; load average {load0[0]:.2f} -> {load1[0]:.2f}; Python {sys.version.split()[0]}"
    )
    print(
        f"{args.requests} requests and {args.streams} streams of {args.chunks} chunks per client, interleaved\n"
    )
    print("| client | request p50 / p90 ms | added p50 ms | stream p50 ms | added µs/chunk |")
    print("|---|---|---|---|---|")
    base_req = _stats(result["unguarded"]["request"])[0]
    base_stream = statistics.median(result["unguarded"]["stream"])
    for name, samples in result.items():
        p50, p90 = _stats(samples["request"])
        stream = statistics.median(samples["stream"])
        added = "" if name == "unguarded" else f"**{(p50 - base_req) * 1000:.2f}**"
        per_chunk = (
            "" if name == "unguarded" else f"**{(stream - base_stream) / args.chunks * 1e6:.1f}**"
        )
        print(
            f"| async {name} | {p50 * 1000:.2f} / {p90 * 1000:.2f} | {added} | {stream * 1000:.1f} | {per_chunk} |"
        )
    base_sync = _stats(sync["unguarded"])[0]
    for name, samples in sync.items():
        p50, p90 = _stats(samples)
        added = "" if name == "unguarded" else f"**{(p50 - base_sync) * 1000:.2f}**"
        print(f"| sync {name} | {p50 * 1000:.2f} / {p90 * 1000:.2f} | {added} | | |")


if __name__ == "__main__":
    main()
