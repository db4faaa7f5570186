"""Gateway benchmark (issue 15): what the LiteLLM guardrail adds per request and per chunk.

Run: `nice uv run --frozen python bench/bench_litellm.py` (`--requests N`,
`--streams N`, `--chunks N`). On 127.0.0.1: this process (the stock
`openai.AsyncOpenAI` client), the fake OpenAI-compatible upstream in a
process of its own, a real `llm-policy serve` (memory deployment, one
worker) and three LiteLLM proxies started with LiteLLM's CLI: one without
guardrails, one with our guardrail embedded (`POLICY_DIR`), one with it
against the server (`POLICY_SERVER_URL`). The guarded proxies run
docs/gateways.md's config.yaml; the unguarded one the same file without its
`guardrails:` entry. The policies and the upstream's answers are those of
bench/bench_gateways.py (the guarded OpenAI client's bench), so the two
tables compare: both phases judged on every call, nothing denied.

The three proxies are called interleaved (one request each in turn), so load
on the shared machine falls on all alike.

- per request: a non-streamed completion (a 60-character answer); median and
  p90 of the wall time per call, and the added median (guarded - unguarded).
- per chunk: a streamed completion of `--chunks` chunks of 4 characters;
  added per chunk = (median guarded stream time - median unguarded) / chunks.

Figures: docs/benchmarks.md, "Gateways", "The LiteLLM proxy guardrail".
"""

from __future__ import annotations

import os

# litellm is imported below (the in-process part): its bundled price map, never a download.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import asyncio
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import openai
from bench_gateways import REQUEST_POLICY, policy_server, upstream_process
from policy_cli.testing import clean_env, free_port

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-bench-master-key"
MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in one line."}]


def docs_config() -> str:
    text = (ROOT / "docs" / "gateways.md").read_text(encoding="utf-8")
    section = text.split("## LiteLLM proxy guardrail", 1)[1].split("\n## ", 1)[0]
    (config,) = [b for b in re.findall(r"```yaml\n(.*?)```", section, re.S) if "guardrails:" in b]
    return config


def without_guardrails(config: str) -> str:
    head, rest = config.split("guardrails:\n", 1)
    tail = rest.split("\ngeneral_settings:", 1)[1]
    return head + "general_settings:" + tail


@contextmanager
def proxy(name: str, workdir: Path, config: str, env: dict[str, str]) -> Iterator[str]:
    workdir.mkdir(parents=True)
    (workdir / "config.yaml").write_text(config)
    port = free_port()
    litellm = Path(sys.executable).with_name("litellm")
    command = [str(litellm), "--config", "config.yaml", "--port", str(port), "--host", "127.0.0.1"]
    log = workdir / "proxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def wait_live(urls: dict[str, str], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    waiting = dict(urls)
    while waiting and time.monotonic() < deadline:
        for name, url in list(waiting.items()):
            try:
                with urllib.request.urlopen(f"{url}/health/liveliness", timeout=2) as answer:
                    if answer.status == 200:
                        del waiting[name]
            except OSError:
                pass
        time.sleep(0.5)
    if waiting:
        raise RuntimeError(f"proxies did not start: {sorted(waiting)}")


def proxy_env(upstream: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in clean_env().items()
        if not k.startswith(("LITELLM_", "OPENAI_", "POLICY_", "DATABASE_"))
    }
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_TELEMETRY_DISABLED="true",
        LITELLM_LOG="ERROR",
        LITELLM_MASTER_KEY=MASTER_KEY,
        OPENAI_API_BASE=upstream,
        OPENAI_API_KEY="sk-fake-upstream",
        NO_PROXY="127.0.0.1,localhost",
        **extra,
    )
    return env


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.9) - 1]


async def bench(
    urls: dict[str, str], args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    clients = {
        name: openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=MASTER_KEY, max_retries=0)
        for name, url in urls.items()
    }
    out: dict[str, dict[str, list[float]]] = {
        n: {"request": [], "stream": [], "delivered": []} for n in clients
    }
    delivered: list[int] = []

    async def once(client: Any) -> None:
        result = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=200, user="u-bench"
        )
        assert result.choices[0].message.content

    async def streamed(client: Any) -> None:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, max_tokens=2000, stream=True, user="u-bench"
        )
        size = count = 0
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                size += len(chunk.choices[0].delta.content)
                count += 1
        assert size == args.chunks * 4, size
        delivered.append(count)

    async def timed(job: Any, client: Any) -> float:
        t0 = time.perf_counter()
        await job(client)
        return time.perf_counter() - t0

    for _ in range(10):  # warm-up: connections, the proxies' lazy imports, compiled policies
        for client in clients.values():
            await once(client)
            await streamed(client)
    for _ in range(args.requests):
        for name, client in clients.items():
            out[name]["request"].append(await timed(once, client))
    for _ in range(args.streams):
        for name, client in clients.items():
            out[name]["stream"].append(await timed(streamed, client))
            out[name]["delivered"].append(delivered[-1])
    for client in clients.values():
        await client.close()
    return out


async def guardrail_per_chunk(policies: Path, chunks: int, rounds: int) -> tuple[float, float]:
    """The guardrail's own stream hook in process (embedded), µs per chunk: (guarded, bare)."""
    from litellm.proxy._types import UserAPIKeyAuth
    from litellm.types.utils import ModelResponseStream, Usage
    from policy_integrations.gateways.litellm_guardrail import LLMPolicyGuardrail

    guardrail = LLMPolicyGuardrail(
        guardrail_name="bench", event_hook=["pre_call", "post_call"], policy_dir=str(policies)
    )
    key = UserAPIKeyAuth()
    text = "The quarterly report shows revenue growth across all regions. " * (chunks // 15 + 1)
    items = [
        ModelResponseStream(
            id="b",
            model="gpt-4o",
            choices=[{"index": 0, "delta": {"content": text[i * 4 : i * 4 + 4]}}],
        )
        for i in range(chunks)
    ]
    items.append(
        ModelResponseStream(
            id="b", model="gpt-4o", choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]
        )
    )
    items.append(
        ModelResponseStream(
            id="b",
            model="gpt-4o",
            choices=[],
            usage=Usage(prompt_tokens=10, completion_tokens=chunks),
        )
    )

    async def upstream() -> Any:
        for item in items:
            yield item

    guarded: list[float] = []
    bare: list[float] = []
    for i in range(rounds + 5):
        data: dict[str, Any] = {
            "model": "gpt-4o",
            "messages": MESSAGES,
            "stream": True,
            "litellm_call_id": f"bench-{i}",
            "user": "u-bench",
        }
        await guardrail.async_pre_call_hook(key, None, data, "acompletion")
        t0 = time.perf_counter()
        async for _ in guardrail.async_post_call_streaming_iterator_hook(key, upstream(), data):
            pass
        t1 = time.perf_counter()
        async for _ in upstream():
            pass
        t2 = time.perf_counter()
        if i >= 5:
            guarded.append((t1 - t0) / chunks * 1e6)
            bare.append((t2 - t1) / chunks * 1e6)
    return statistics.median(guarded), statistics.median(bare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--chunks", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        policies = Path(tmp) / "policies"
        policies.mkdir()
        (policies / "requests.yaml").write_text(REQUEST_POLICY)
        (policies / "response.yaml").write_text(
            (ROOT / "examples" / "policies" / "response.yaml").read_text()
        )
        data = Path(tmp) / "data"
        data.mkdir()
        upstream = stack.enter_context(upstream_process(args.chunks))
        server, token = stack.enter_context(policy_server(policies, data))
        config = docs_config()
        urls = {
            "no guardrail": stack.enter_context(
                proxy("plain", Path(tmp) / "plain", without_guardrails(config), proxy_env(upstream))
            ),
            "embedded": stack.enter_context(
                proxy(
                    "embedded",
                    Path(tmp) / "embedded",
                    config,
                    proxy_env(upstream, POLICY_DIR=str(policies)),
                )
            ),
            "remote": stack.enter_context(
                proxy(
                    "remote",
                    Path(tmp) / "remote",
                    config,
                    proxy_env(upstream, POLICY_SERVER_URL=server, POLICY_SERVER_TOKEN=token),
                )
            ),
        }
        wait_live(urls)
        start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        load0 = os.getloadavg()
        result = asyncio.run(bench(urls, args))
        end = time.strftime("%H:%M:%S UTC", time.gmtime())
        load1 = os.getloadavg()
        stack.close()  # the proxies stop before the in-process part
        report(result, args, f"{start} - {end}", load0[0], load1[0])
        hook = asyncio.run(guardrail_per_chunk(policies, args.chunks, args.streams))
    print(
        f"\nThe stream hook in process (embedded, {args.chunks} chunks, median of "
        f"{args.streams}; ended {time.strftime('%H:%M:%S UTC', time.gmtime())}): "
        f"{hook[0]:.1f} µs per chunk guarded, {hook[1]:.1f} µs bare"
    )


def report(
    result: dict[str, dict[str, list[float]]],
    args: argparse.Namespace,
    when: str,
    load0: float,
    load1: float,
) -> None:
    print(f"{when}; load average {load0:.2f} -> {load1:.2f}; Python {sys.version.split()[0]}")
    print(
        f"{args.requests} requests and {args.streams} streams of {args.chunks} chunks "
        "per proxy, interleaved\n"
    )
    print(
        "| LiteLLM proxy | request p50 / p90 ms | added p50 ms | stream p50 ms "
        "| chunks delivered | added µs per upstream chunk |"
    )
    print("|---|---|---|---|---|---|")
    base_req = _stats(result["no guardrail"]["request"])[0]
    base_stream = statistics.median(result["no guardrail"]["stream"])
    for name, samples in result.items():
        p50, p90 = _stats(samples["request"])
        stream = statistics.median(samples["stream"])
        first = name == "no guardrail"
        added = "" if first else f"**{(p50 - base_req) * 1000:.2f}**"
        per_chunk = "" if first else f"**{(stream - base_stream) / args.chunks * 1e6:.1f}**"
        chunks_out = statistics.median(samples["delivered"])
        print(
            f"| {name} | {p50 * 1000:.2f} / {p90 * 1000:.2f} | {added} | "
            f"{stream * 1000:.1f} | {chunks_out:.0f} | {per_chunk} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
