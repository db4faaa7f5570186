"""`make reliability`: faults under mixed load, a soak, fuzzing and the hostile-input tests,
then one summary table. Exits 1 when any part missed its target.

    uv run --frozen python reliability/run.py --profile full   # about 21 minutes on 2 cores
    uv run --frozen python reliability/run.py --profile ci     # about 6 minutes: what CI runs

Profiles (seconds): full: faults held 10, soak 600, fuzzing 60 per target;
ci: faults held 5, soak 60, fuzzing 20 per target. Both run every fault and the
hostile-input tests. The results also go to reliability/results/<profile>.json.
Needs PostgreSQL's binaries (initdb, pg_ctl) and redis-server; starts its own instances
on free ports and never touches the ones on 5432 and 6379.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

PROFILES: dict[str, dict[str, float]] = {
    "full": {"hold": 10, "before": 5, "after": 5, "soak": 600, "fuzz": 60},
    "ci": {"hold": 5, "before": 3, "after": 3, "soak": 60, "fuzz": 20},
}
# Tests of hostile input (issue 13), run as part of the suite when they exist.
HOSTILE_TESTS = ["tests/reliability", "tests/test_hostile_input.py"]
P99_FACTOR = 2.0  # the last minute's p99 within twice the first minute's (a shared, noisy machine)
FD_SLACK = 4  # a pool may open a few more connections as the load settles


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} (1 / 5 min), {os.cpu_count()} cores"


# What a fault may break by design, stated in docs/reliability.md: a worker killed with
# SIGKILL loses the decisions it answered but had not yet handed to PostgreSQL or the
# spool (its in-memory queue, flushed every 50 ms). Shown in the table, not a failure.
KNOWN_LIMITS = {"HTTP worker SIGKILL": "records_lost"}


def known_limit(r: dict[str, Any]) -> str | None:
    field = KNOWN_LIMITS.get(r["fault"])
    return field if field is not None and r[field] else None


def fault_ok(r: dict[str, Any]) -> bool:
    return (
        r["failed_evaluations"] == 0
        and (r["records_lost"] == 0 or known_limit(r) == "records_lost")
        and r["writes_lost"] == 0
        and r["writes_failed"] == 0
        and r["usage_failed"] == 0
        and r["recovery_s"] is not None
        and r["http_alive"]
        and r["grpc_alive"]
    )


def soak_ok(r: dict[str, Any]) -> bool:
    return (
        r["failed"] == 0
        and r["server_alive"]
        and r["rss_growth_pct"] is not None
        and r["rss_growth_pct"] < 10
        and r["fds_end"] <= r["fds_start"] + FD_SLACK
        and r["p99_last_ms"] <= P99_FACTOR * r["p99_first_ms"]
    )


def run_fuzz(seconds: int) -> list[dict[str, Any]]:
    out = []
    for target in ("expression", "loader"):
        proc = subprocess.run(
            [sys.executable, str(HERE / "fuzz.py"), target, "--seconds", str(seconds)],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        lines = proc.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {"target": target, "exit": proc.returncode}
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
        out.append(result)
    return out


def run_hostile() -> dict[str, Any]:
    paths = [p for p in HOSTILE_TESTS if (ROOT / p).exists()]
    if not paths:
        return {"paths": [], "exit": None, "summary": "not on main yet"}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *paths, "-p", "no:randomly", "-rN"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    return {
        "paths": paths,
        "exit": proc.returncode,
        "summary": summary,
        "seconds": round(time.monotonic() - started, 1),
    }


def table(results: dict[str, Any]) -> str:
    rows = [("part", "what", "figures", "held")]
    for r in results.get("faults", []):
        figures = (
            f"{r['evaluations']} decisions, {r['failed_evaluations']} failed; "
            f"{r['records_lost']} records lost; writes {r['writes_acked']} acked/"
            f"{r['writes_503']} 503/{r['writes_failed']} failed, {r['writes_lost']} lost; "
            f"usage {r['usage_ok']} ok/{r['usage_503']} 503/{r['usage_failed']} failed; "
            f"recovered in {r['recovery_s']} s"
        )
        held = "yes" if fault_ok(r) else "NO"
        if fault_ok(r) and known_limit(r):
            held = f"yes, but {r['records_lost']} records lost (known limit)"
        rows.append((f"fault ({r['deployment']})", r["fault"], figures, held))
    if "soak" in results:
        s = results["soak"]
        figures = (
            f"{s['seconds']} s at {s['rate_rps']}/s (peak {s['peak_rps']}/s), {s['failed']} failed; "
            f"RSS {s['rss_start_mb']}->{s['rss_end_mb']} MB ({s['rss_growth_pct']} %); "
            f"fds {s['fds_start']}->{s['fds_end']}; p99 {s['p99_first_ms']}->{s['p99_last_ms']} ms"
        )
        rows.append(("soak", "half the peak, open loop", figures, "yes" if soak_ok(s) else "NO"))
    for f in results.get("fuzz", []):
        figures = (
            f"{f.get('seconds')} s, {f.get('executions')} executions, corpus {f.get('corpus')}, "
            f"new crashes {len(f.get('new_crashes', []))}"
        )
        held = f.get("exit") == 0 and not f.get("new_crashes")
        rows.append(("fuzz (atheris)", str(f.get("target")), figures, "yes" if held else "NO"))
    if "hostile" in results:
        h = results["hostile"]
        held = "yes" if h["exit"] == 0 else ("n/a" if h["exit"] is None else "NO")
        rows.append(("hostile input", " ".join(h["paths"]) or "-", h["summary"], held))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def all_held(results: dict[str, Any]) -> bool:
    ok = all(fault_ok(r) for r in results.get("faults", []))
    ok &= "soak" not in results or soak_ok(results["soak"])
    ok &= all(f.get("exit") == 0 and not f.get("new_crashes") for f in results.get("fuzz", []))
    ok &= results.get("hostile", {}).get("exit") in (0, None)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument(
        "--parts",
        default="faults,soak,fuzz,hostile",
        help="comma-separated subset of faults,soak,fuzz,hostile",
    )
    args = parser.parse_args()
    profile = PROFILES[args.profile]
    parts = set(args.parts.split(","))
    started = time.monotonic()
    results: dict[str, Any] = {
        "profile": args.profile,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_before": _load(),
    }
    if "fuzz" in parts:
        print("== fuzzing", flush=True)
        results["fuzz"] = run_fuzz(int(profile["fuzz"]))
    if "hostile" in parts:
        print("== hostile input tests", flush=True)
        results["hostile"] = run_hostile()
    if "faults" in parts:
        print("== faults under mixed load", flush=True)
        from faults import run_faults

        results["faults"] = asyncio.run(
            run_faults(
                ["single", "cluster"],
                before=profile["before"],
                hold=profile["hold"],
                after=profile["after"],
            )
        )
    if "soak" in parts:
        print(f"== soak ({profile['soak']:.0f} s)", flush=True)
        from soak import soak

        results["soak"] = asyncio.run(soak(profile["soak"]))
    results["load_after"] = _load()
    results["seconds"] = round(time.monotonic() - started, 1)
    out = HERE / "results" / f"{args.profile}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print()
    print(table(results))
    held = all_held(results)
    print(
        f"\n{results['date']}, {results['seconds']} s; {results['load_before']} before, "
        f"{results['load_after']} after; results in {out.relative_to(ROOT)}"
    )
    print("every part held" if held else "SOME PART MISSED ITS TARGET")
    sys.exit(0 if held else 1)


if __name__ == "__main__":
    main()
