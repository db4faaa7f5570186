"""`make reliability`: faults under mixed load, a soak, fuzzing and the hostile-input tests,
then one summary table. Exits 1 when any part missed its target.

    uv run --frozen python reliability/run.py --profile full   # under 20 minutes on 2 cores
    uv run --frozen python reliability/run.py --profile ci     # about 6 minutes: what CI runs

Profiles (seconds): full: faults held 10 (3 of load before and after), the peak measured
for 20, soak 600 after a 20 s warm-up, fuzzing 60 per target; ci: faults held 5, peak 10,
soak 60 after 15, fuzzing 20 per target. Both run every fault
and the hostile-input tests. The two fuzz targets run side by side (one process each, one
core each) before anything else starts; the rest runs one part at a time. The results
also go to reliability/results/<profile>.json; the table ends with the wall time of each
part and of the whole run. Needs PostgreSQL's binaries (initdb, pg_ctl) and redis-server;
starts one PostgreSQL and one Redis of its own on free ports (a database per deployment,
kept across the faults and the soak) and never touches the ones on 5432 and 6379.
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
    "full": {
        "hold": 10,
        "before": 3,
        "after": 3,
        "peak": 20,
        "soak": 600,
        "warmup": 20,
        "fuzz": 60,
    },
    "ci": {"hold": 5, "before": 3, "after": 3, "peak": 10, "soak": 60, "warmup": 15, "fuzz": 20},
}
# Tests of hostile input (issue 13), run as part of the suite when they exist.
HOSTILE_TESTS = ["tests/reliability", "tests/test_hostile_input.py"]
# The soak's p99 is stable when the last window's (a minute; a third of a short soak) is at
# most P99_FACTOR times the first window's plus P99_SLACK_MS: on this shared 2-core machine
# another session's burst moves one window's p99 by tens of ms, while a leak or a queue
# that builds up (the usage counters' 0 holds, 2026-12-02) multiplied it by 3 to 10.
P99_FACTOR = 2.0
P99_SLACK_MS = 50.0
# fds at the end at most this many above the first sample after the warm-up, not counting
# the database pools' connections (bounded by the pools' max_size: a burst may open more)
FD_SLACK = 4
KEPT_UP = 0.95  # answered at least this share of the scheduled rate (else the server fell behind)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} (1 / 5 min), {os.cpu_count()} cores"


def fault_ok(r: dict[str, Any]) -> bool:
    return (
        r["failed_evaluations"] == 0
        and r["records_lost"] == 0
        and r["writes_lost"] == 0
        and r.get("audit_lost", 0) == 0
        and r["writes_failed"] == 0
        and r["usage_failed"] == 0
        and r["recovery_s"] is not None
        and r["http_alive"]
        and r["grpc_alive"]
        and r.get("non_json_log_lines", 0) == 0
    )


def soak_ok(r: dict[str, Any]) -> bool:
    return (
        r["failed"] == 0
        and r["server_alive"]
        and r["rss_growth_pct"] is not None
        and r["rss_growth_pct"] < 10
        and r["fds_end"] - r.get("db_sockets_end", 0)
        <= r["fds_start"] - r.get("db_sockets_start", 0) + FD_SLACK
        and r["p99_last_ms"] <= P99_FACTOR * r["p99_first_ms"] + P99_SLACK_MS
        and r.get("achieved_rps", r["rate_rps"]) >= KEPT_UP * r["rate_rps"]
    )


def run_fuzz(seconds: int) -> list[dict[str, Any]]:
    """Both targets side by side: each is one single-threaded process (a core each)."""
    targets = ("expression", "loader")
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "fuzz.py"), target, "--seconds", str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for target in targets
    ]
    out = []
    for target, proc in zip(targets, procs, strict=True):
        stdout, stderr = proc.communicate()
        lines = stdout.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {"target": target, "exit": proc.returncode}
        if proc.returncode != 0:
            print(stderr[-3000:], file=sys.stderr)
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
            f"{r['records_lost']} records lost; {r.get('audit_lost', '-')} audit events lost; "
            f"writes {r['writes_acked']} acked/"
            f"{r['writes_503']} 503/{r['writes_failed']} failed, {r['writes_lost']} lost; "
            f"usage {r['usage_ok']} ok/{r['usage_503']} 503/{r['usage_failed']} failed; "
            f"recovered in {r['recovery_s']} s"
            + (
                "; failures: " + ", ".join(f"{n}x {why}" for why, n in r["reasons"].items())
                if r.get("reasons")
                else ""
            )
            + (
                f"; {r['non_json_log_lines']} log lines not JSON"
                if r.get("non_json_log_lines")
                else ""
            )
        )
        held = "yes" if fault_ok(r) else "NO"
        rows.append((f"fault ({r['deployment']})", r["fault"], figures, held))
    if "soak" in results:
        s = results["soak"]
        figures = (
            f"{s['seconds']} s at {s['rate_rps']}/s (peak {s['peak_rps']}/s, answered "
            f"{s.get('achieved_rps')}/s), {s['failed']} failed; "
            f"RSS {s['rss_start_mb']}->{s['rss_end_mb']} MB ({s['rss_growth_pct']} %); "
            f"fds {s['fds_start']}->{s['fds_end']} (database pools "
            f"{s.get('db_sockets_start')}->{s.get('db_sockets_end')}); p99 first/last {s.get('window_s')} s "
            f"{s['p99_first_ms']}->{s['p99_last_ms']} ms (worst {s.get('p99_worst_ms')}); "
            f"generator lag p99 {s.get('generator_lag_p99_ms')} ms"
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
    if "seconds" in results:
        parts = ", ".join(f"{k} {v} s" for k, v in results.get("part_seconds", {}).items())
        rows.append(("total", "wall time", f"{results['seconds']} s ({parts})", ""))
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
    timings: dict[str, float] = {}
    results["part_seconds"] = timings

    def timed(name: str, started: float) -> None:
        timings[name] = round(time.monotonic() - started, 1)
        print(f"   {name}: {timings[name]} s", flush=True)

    if "fuzz" in parts:
        print("== fuzzing (both targets side by side)", flush=True)
        t = time.monotonic()
        results["fuzz"] = run_fuzz(int(profile["fuzz"]))
        timed("fuzz", t)
    if "hostile" in parts:
        print("== hostile input tests", flush=True)
        t = time.monotonic()
        results["hostile"] = run_hostile()
        timed("hostile", t)
    if parts & {"faults", "soak"}:
        from stack import Backends

        backends = Backends()
        try:
            t = time.monotonic()
            backends.start()
            timed("backends", t)
            if "faults" in parts:
                print("== faults under mixed load", flush=True)
                from faults import run_faults

                t = time.monotonic()
                results["faults"] = asyncio.run(
                    run_faults(
                        ["single", "cluster"],
                        before=profile["before"],
                        hold=profile["hold"],
                        after=profile["after"],
                        backends=backends,
                    )
                )
                timed("faults", t)
            if "soak" in parts:
                print(f"== soak ({profile['soak']:.0f} s)", flush=True)
                from soak import soak

                t = time.monotonic()
                results["soak"] = asyncio.run(
                    soak(
                        profile["soak"],
                        peak_seconds=profile["peak"],
                        warmup=profile["warmup"],
                        backends=backends,
                    )
                )
                timed("soak", t)
        finally:
            backends.stop()
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
