"""Scale benchmark (issue 16): load, compile, memory, GC pause and decisions for 20 to 10,000 rules.

Run: `uv run python bench/bench_scale.py` (all sizes; each in a fresh process)
or `uv run python bench/bench_scale.py --one 10000 100` (one size: rules, policies).
The workload is bench/scale_rules.py. Per size it prints:

- load: parse + validate the YAML texts (`load_policy_text`), ms;
- compile: `PolicyEngine(policies)`, ms;
- RSS growth: resident memory after compile (and a collection) minus before load, MB;
- gc: one full `gc.collect()` with the engine loaded, ms, after the embedding
  application's step of docs/embedding (`policy_core.freeze_after_load()` when
  the package has it; `--no-freeze` measures without it);
- p50 / p99 per decision over the generated requests (round robin), µs, in
  wall-clock time and in the thread's CPU time (the same calls again; on a
  shared machine preemption inflates the wall-clock tail, not the CPU one);
- load and compile also in process CPU time, for the same reason.

Figures go to docs/benchmarks.md ("Scale"). No figure here is asserted by a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

SIZES = ((20, 1), (100, 1), (1_000, 1), (10_000, 1), (10_000, 100))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def measure(n: int, policies: int, samples: int, freeze: bool) -> dict[str, object]:
    import policy_core
    import scale_rules
    from policy_core import PolicyEngine, load_policy_text
    from policy_core.language import source

    texts = scale_rules.policy_texts(n, policies)
    # One policy of 10,000 rules is past the loader's per-document guard against YAML
    # bombs (MAX_DOCUMENT_VALUES); the scale workload lifts it for its own texts.
    source.MAX_DOCUMENT_VALUES = max(source.MAX_DOCUMENT_VALUES, 12 * n)
    requests = scale_rules.contexts(n)
    # Imports and first-use caches out of the figures: load and compile a small set once.
    PolicyEngine(load_policy_text(scale_rules.policy_texts(20)[0])).evaluate(requests[0])
    gc.collect()
    rss0 = _rss_mb()
    cpu = time.process_time
    t0, c0 = time.perf_counter(), cpu()
    loaded = [p for text in texts for p in load_policy_text(text)]
    t1, c1 = time.perf_counter(), cpu()
    engine = PolicyEngine(loaded)
    t2, c2 = time.perf_counter(), cpu()
    engine.evaluate(requests[0])  # first decision: lazy imports (prices, RE2 sets)
    freezer = getattr(policy_core, "freeze_after_load", None)
    frozen = bool(freeze and freezer is not None)
    if frozen:
        freezer()  # type: ignore[misc]
    gc.collect()
    rss1 = _rss_mb()
    tracked = len(gc.get_objects()) + gc.get_freeze_count()
    pauses = []
    for _ in range(3):
        g0 = time.perf_counter()
        gc.collect()
        pauses.append((time.perf_counter() - g0) * 1000)
    evaluate = engine.evaluate
    count = len(requests)
    for i in range(min(samples, 2_000)):  # warm up
        evaluate(requests[i % count])
    times = []
    cpu_times = []
    clock = time.perf_counter_ns
    thread_clock = time.thread_time_ns
    for i in range(samples):
        ctx = requests[i % count]
        s0 = clock()
        evaluate(ctx)
        times.append(clock() - s0)
    # The same calls timed in this thread's CPU time: what preemption by the other
    # processes of a shared machine adds to the wall-clock tail is left out.
    for i in range(samples):
        ctx = requests[i % count]
        s0 = thread_clock()
        evaluate(ctx)
        cpu_times.append(thread_clock() - s0)
    denied = sum(1 for ctx in requests if evaluate(ctx).decision == "deny")
    return {
        "rules": n,
        "policies": policies,
        "load_ms": round((t1 - t0) * 1000, 1),
        "compile_ms": round((t2 - t1) * 1000, 1),
        "load_cpu_ms": round((c1 - c0) * 1000, 1),
        "compile_cpu_ms": round((c2 - c1) * 1000, 1),
        "rss_mb": round(rss1 - rss0, 1),
        "gc_ms": round(sorted(pauses)[1], 1),
        "gc_tracked": tracked,
        "frozen": frozen,
        "p50_us": round(_percentile(times, 0.5), 2),
        "p99_us": round(_percentile(times, 0.99), 2),
        "cpu_p50_us": round(_percentile(cpu_times, 0.5), 2),
        "cpu_p99_us": round(_percentile(cpu_times, 0.99), 2),
        "denied": f"{denied}/{count}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, type=int, metavar=("RULES", "POLICIES"))
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--no-freeze", action="store_true")
    parser.add_argument("--sizes", help="comma-separated RULES[xPOLICIES], e.g. 20,10000x100")
    args = parser.parse_args()
    if args.one:
        result = measure(args.one[0], args.one[1], args.samples, not args.no_freeze)
        print(json.dumps(result))
        return
    sizes = SIZES
    if args.sizes:
        sizes = tuple(
            (int(a), int(b or 1))
            for a, _, b in (part.partition("x") for part in args.sizes.split(","))
        )
    print(
        "| rules | policies | load ms (CPU) | compile ms (CPU) | RSS growth MB "
        "| full gc ms (tracked objects) | p50 / p99 µs | CPU p50 / p99 µs | denied |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n, policies in sizes:
        cmd = [sys.executable, __file__, "--one", str(n), str(policies)]
        cmd += ["--samples", str(args.samples)]
        if args.no_freeze:
            cmd.append("--no-freeze")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"| {r['rules']:,} | {r['policies']} | {r['load_ms']:,.0f} ({r['load_cpu_ms']:,.0f}) "
            f"| {r['compile_ms']:,.0f} ({r['compile_cpu_ms']:,.0f}) | {r['rss_mb']:.1f} "
            f"| {r['gc_ms']:.1f} ({r['gc_tracked']:,}{', frozen' if r['frozen'] else ''}) "
            f"| {r['p50_us']:.1f} / {r['p99_us']:.1f} | {r['cpu_p50_us']:.1f} / {r['cpu_p99_us']:.1f} "
            f"| {r['denied']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
