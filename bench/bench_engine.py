"""Engine benchmark: the reference workload ("LLM request gate"), compile time, import time.

Run: `make bench` (or `uv run python bench/bench_engine.py`). Prints the figures
recorded in docs/benchmarks.md. Single thread, time.perf_counter_ns per call.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from policy_core import PolicyEngine, load_policies, load_policy_text

HERE = Path(__file__).parent


def percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def bench_decisions(rounds: int = 20_000) -> None:
    engine = PolicyEngine(load_policies(HERE / "reference_policies.yaml"))
    contexts = json.loads((HERE / "reference_contexts.json").read_text())
    for item in contexts:
        name, ctx = item["name"], item["context"]
        for _ in range(2_000):  # warm up
            engine.evaluate(ctx)
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            engine.evaluate(ctx)
            samples.append(time.perf_counter_ns() - t0)
        decision = engine.evaluate(ctx)
        print(
            f"decision {name:<24} {decision.decision:<6} p50 {percentile(samples, 0.5):6.2f} us"
            f"  p99 {percentile(samples, 0.99):6.2f} us  mean {statistics.fmean(samples) / 1000:6.2f} us"
        )


def bench_compile(rules: int = 1_000) -> None:
    body = "\n".join(
        f"  - id: r{i}\n    condition: \"llm.model == 'm{i}' && llm.max_tokens > {i} && "
        f"!user.has_permission('p.{i}')\"\n    action: {{decision: deny, reason: 'rule {i}'}}"
        for i in range(rules)
    )
    text = f"metadata: {{id: big}}\nrules:\n{body}\n"
    t0 = time.perf_counter()
    policies = load_policy_text(text)
    t1 = time.perf_counter()
    PolicyEngine(policies)
    t2 = time.perf_counter()
    print(f"load {rules} rules {1000 * (t1 - t0):.0f} ms; compile {1000 * (t2 - t1):.0f} ms")


def bench_import() -> None:
    code = "import time; t=time.perf_counter(); import policy_core; print((time.perf_counter()-t)*1000)"
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(5)
    ]
    print(f"import policy_core: median {statistics.median(runs):.1f} ms over 5 fresh processes")


if __name__ == "__main__":
    bench_decisions()
    bench_compile()
    bench_import()
