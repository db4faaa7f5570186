"""Stream judge benchmark (spec 7.2): a 2,000-token completion in 4-character deltas.

Run: `uv run --frozen python bench/bench_stream.py`. The policy is
examples/policies/response.yaml (credential patterns, PII redaction, tool and
cost rules); the completion is ~8,000 characters of plain prose (2,000 tokens
at 4 characters a token), cut into 4-character deltas. Prints, per scenario,
deltas per second through `feed`, the added time per delta (the judge's
feed+close over the whole stream, minus a loop that only forwards the deltas,
divided by the number of deltas), per-feed p50/p99, and the close time.
Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from policy_core import PolicyEngine, load_policies

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = {"user": {"id": "u1", "roles": ["user"]}, "llm": {"model": "gpt-4o"}}
SENTENCE = (
    "The quarterly report shows revenue growth across all regions, with the strongest "
    "gains in the enterprise segment and steady retention among smaller customers. "
)


def completion(chars: int = 8_000, tail: str = "") -> str:
    body = (SENTENCE * (chars // len(SENTENCE) + 1))[: chars - len(tail)]
    return body + tail


def run(engine: PolicyEngine, text: str, rounds: int) -> dict[str, float]:
    deltas = [text[i : i + 4] for i in range(0, len(text), 4)]
    usage = {"prompt_tokens": 200, "completion_tokens": 2_000}
    # baseline: a proxy that forwards each delta and joins the text at the end
    base: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        out = []
        for d in deltas:
            out.append(d)
        "".join(out)
        base.append(time.perf_counter_ns() - t0)
    totals: list[float] = []
    feeds: list[int] = []
    closes: list[int] = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        judge = engine.response_stream(CONTEXT)
        out = []
        feed = judge.feed
        for d in deltas:
            f0 = time.perf_counter_ns()
            chunk = feed(d)
            feeds.append(time.perf_counter_ns() - f0)
            out.append(chunk.text)
        c0 = time.perf_counter_ns()
        final = judge.close(usage)
        closes.append(time.perf_counter_ns() - c0)
        out.append(final.text)
        totals.append(time.perf_counter_ns() - t0)
    # untimed-per-feed pass for the throughput figure (no perf_counter per delta)
    plain: list[float] = []
    for _ in range(rounds):
        judge = engine.response_stream(CONTEXT)
        feed = judge.feed
        t0 = time.perf_counter_ns()
        for d in deltas:
            feed(d)
        judge.close(usage)
        plain.append(time.perf_counter_ns() - t0)
    feeds.sort()
    n = len(deltas)
    best_plain = statistics.median(plain)
    return {
        "deltas": n,
        "decision": final.decision.decision if final.decision else "?",
        "deltas_per_s": n / (best_plain / 1e9),
        "added_us_per_delta": (best_plain - statistics.median(base)) / n / 1000,
        "feed_p50_us": feeds[len(feeds) // 2] / 1000,
        "feed_p99_us": feeds[int(len(feeds) * 0.99)] / 1000,
        "close_ms": statistics.median(closes) / 1e6,
        "window": float(engine.response_stream(CONTEXT).window or 0),
    }


def main() -> None:
    engine = PolicyEngine(load_policies([ROOT / "examples" / "policies" / "response.yaml"]))
    scenarios = {
        "clean prose": completion(),
        "PII at the end": completion(tail=" Contact ann@example.com."),
        "key at the middle": completion(4_000) + " sk-" + "a" * 32 + " " + completion(3_960),
    }
    for name, text in scenarios.items():
        r = run(engine, text, rounds=30)
        print(
            f"{name:<18} {r['decision']:<5} window {r['window']:.0f}  {r['deltas']:.0f} deltas  "
            f"{r['deltas_per_s']:>10,.0f} deltas/s  added {r['added_us_per_delta']:.2f} us/delta  "
            f"feed p50 {r['feed_p50_us']:.2f} us p99 {r['feed_p99_us']:.2f} us  "
            f"close {r['close_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
