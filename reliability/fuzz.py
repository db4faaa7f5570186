"""Fuzz one target with atheris (libFuzzer, coverage guided) for a number of seconds.

    uv run --frozen python reliability/fuzz.py expression --seconds 60
    uv run --frozen python reliability/fuzz.py loader --seconds 60

The corpus grows in reliability/corpus/<target>/ (committed: the pytest replay runs it);
a crash writes its input to reliability/crashes/<target>/ (committed once fixed, as a
regression case). The last line printed is one JSON object: target, seconds, executions,
corpus size, crashes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"


def _child(target: str, argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["policy_core"]):
        sys.path.insert(0, str(HERE))
        import fuzz_targets

    launcher = os.environ.get("FUZZ_LAUNCHER", sys.argv[0])
    atheris.Setup([launcher, *argv], fuzz_targets.TARGETS[target])
    atheris.Fuzz()


def run(target: str, seconds: int) -> dict[str, object]:
    corpus = CORPUS / target
    crashes = CRASHES / target
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"llm-policy-fuzz-{target}-"))
    argv = [
        f"-max_total_time={seconds}",
        "-max_len=4096",
        "-rss_limit_mb=1024",
        "-timeout=10",
        f"-artifact_prefix={crashes}/",
        "-print_final_stats=1",
        str(scratch),  # new inputs land here first, then merge into the committed corpus
        str(corpus),
    ]
    # libFuzzer re-runs its own command line for -merge: give it one that names the target.
    launcher = scratch.with_suffix(".sh")
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{__file__}" --child {target} "$@"\n')
    launcher.chmod(0o755)
    before = {p.name for p in crashes.iterdir()}
    started = time.monotonic()
    proc = subprocess.run(
        [str(launcher), *argv],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"FUZZ_LAUNCHER": str(launcher)},
    )
    elapsed = time.monotonic() - started
    output = proc.stderr + proc.stdout
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", output) or re.findall(
        r"Done (\d+) runs", output
    )
    executions = int(runs[-1]) if runs else 0
    # Keep the committed corpus small: only the inputs that add coverage (libFuzzer's merge).
    subprocess.run(
        [str(launcher), "-merge=1", str(corpus), str(scratch)],
        capture_output=True,
        check=False,
        env=os.environ | {"FUZZ_LAUNCHER": str(launcher)},
    )
    launcher.unlink()
    for leftover in scratch.iterdir():
        leftover.unlink()
    scratch.rmdir()
    found = sorted(p.name for p in crashes.iterdir() if p.is_file() and p.name not in before)
    result: dict[str, object] = {
        "target": target,
        "seconds": round(elapsed, 1),
        "executions": executions,
        "corpus": sum(1 for _ in corpus.iterdir()),
        "new_crashes": found,
        "regression_cases": len(before),
        "exit": proc.returncode,
    }
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        print(tail, file=sys.stderr)
    return result


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["expression", "loader"])
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    result = run(args.target, args.seconds)
    print(json.dumps(result))
    sys.exit(0 if result["exit"] == 0 else 1)


if __name__ == "__main__":
    main()
