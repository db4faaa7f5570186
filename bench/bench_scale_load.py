"""Load (parse + validate) of the scale workload, CPU and wall time, fast path on and off (issue 16).

    uv run --frozen python bench/bench_scale_load.py              # 10,000 rules in 100 policies
    uv run --frozen python bench/bench_scale_load.py --rules 10000 --policies 1

`load_policy_text` on each YAML text of bench/scale_rules.py, in this process,
after one small load (imports out of the figure); the parse caches are
emptied before each run. `--slow` also times the position-keeping round-trip
parse alone (`fast=False`, what every load paid before the fast path). CPU
time is the process's (less sensitive than wall time to a shared machine).
Figures go to docs/benchmarks.md ("Scale: loading and one-policy changes");
no figure is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale_rules


def measure(texts: list[str], fast: bool) -> tuple[float, float, int]:
    from policy_core.language import load_policy_text, source
    from policy_core.syntax import parser, templates

    parser._parse_cached.cache_clear()
    templates._parse_template_cached.cache_clear()
    # one policy of 10,000 rules is past the per-document guard (as in bench_scale.py)
    source.MAX_DOCUMENT_VALUES = max(source.MAX_DOCUMENT_VALUES, 12 * 10_000)
    w0, c0 = time.perf_counter(), time.process_time()
    policies = [p for text in texts for p in load_policy_text(text, fast=fast)]
    return time.process_time() - c0, time.perf_counter() - w0, sum(len(p.rules) for p in policies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--slow", action="store_true", help="also time fast=False")
    args = parser.parse_args()
    from policy_core.language import load_policy_text

    load_policy_text(scale_rules.policy_texts(20)[0])
    texts = scale_rules.policy_texts(args.rules, args.policies)
    print("| rules (policies) | path | CPU s | wall s |")
    print("|---|---|---|---|")
    for fast in (True, False) if args.slow else (True,):
        cpu, wall, count = measure(texts, fast)
        path = "fast first" if fast else "round-trip only"
        print(f"| {count:,} ({args.policies}) | {path} | {cpu:.2f} | {wall:.2f} |", flush=True)


if __name__ == "__main__":
    main()
