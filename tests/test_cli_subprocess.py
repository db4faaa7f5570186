"""The installed `llm-policy` script as a shell sees it: exit codes, streams, the progress bar."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from policy_cli.testing import clean_env

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "llm-policy"
POLICIES = ROOT / "examples" / "policies"
CONTEXTS = ROOT / "examples" / "contexts"


def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(**env),
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_the_console_script_is_installed() -> None:
    assert SCRIPT.exists()
    assert run("--version").returncode == 0


@pytest.mark.parametrize(
    ("context", "code", "decision"),
    [
        ("allowed.json", 0, "allow"),
        ("modified-pii.json", 0, "modify"),
        ("warned-expensive.json", 0, "warn"),
        ("denied-injection.json", 1, "deny"),
    ],
)
def test_exit_code_follows_the_decision(context: str, code: int, decision: str) -> None:
    result = run(
        "-o", "json", "evaluate", "run", "--policies", str(POLICIES), "-c", str(CONTEXTS / context)
    )
    assert result.returncode == code, result.stderr
    assert json.loads(result.stdout)["decision"] == decision
    assert result.stderr == ""


def test_exit_2_on_usage_errors() -> None:
    unknown_option = run("evaluate", "run", "--frobnicate")
    assert unknown_option.returncode == 2
    assert "No such option" in unknown_option.stderr
    bad_setting = run("validate", str(POLICIES), LLM_POLICY_PORT="eighty")
    assert bad_setting.returncode == 2
    assert bad_setting.stderr.splitlines()[0] == (
        "error: LLM_POLICY_PORT: 'eighty' is not valid; expected an integer"
    )


def test_exit_3_on_an_invalid_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "metadata: {id: p}\nrules:\n  - id: r\n    condition: 'user.id =='\n"
        "    action: {decision: deny}\n"
    )
    result = run("validate", str(bad))
    assert result.returncode == 3
    assert result.stderr.startswith(f"{bad}:4:27: error: ")
    assert (
        run("evaluate", "run", "-p", str(bad), "-c", str(CONTEXTS / "allowed.json")).returncode == 3
    )


def test_exit_4_when_the_backend_is_unreachable() -> None:
    result = run("--server", "http://127.0.0.1:9", "policy", "list", LLM_POLICY_TOKEN="t")
    assert result.returncode == 4
    assert result.stderr.startswith("error: cannot reach the server")
    db = run("db", "status", LLM_POLICY_DATABASE_URL="postgresql://postgres@127.0.0.1:9/x")
    assert db.returncode == 4


def test_exit_1_on_a_failed_policy_test(tmp_path: Path) -> None:
    assert run("test", str(ROOT / "examples" / "tests")).returncode == 0
    suite = tmp_path / "wrong.test.yaml"
    suite.write_text(
        f"policies: {POLICIES}\ncases:\n  - name: wrong\n    context: {{}}\n"
        "    expect: {decision: modify}\n"
    )
    result = run("test", str(suite))
    assert result.returncode == 1
    assert "FAIL" in result.stdout


def test_batch_answers_each_request_as_it_arrives() -> None:
    """A client that writes one request and waits gets its decision before writing more."""
    proc = subprocess.Popen(
        [str(SCRIPT), "evaluate", "batch", "--policies", str(POLICIES), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
        cwd=ROOT,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    contexts = ["allowed.json", "denied-injection.json", "modified-pii.json"]
    decisions = []
    for i, name in enumerate(contexts):
        context = json.loads((CONTEXTS / name).read_text())
        proc.stdin.write(json.dumps({"context": context, "request_id": f"r{i}"}) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "no decision came back while the input stayed open"
        decisions.append(json.loads(proc.stdout.readline()))
    proc.stdin.close()
    assert proc.wait(timeout=60) == 1  # one of them was denied
    proc.stdout.close()
    assert [d["request_id"] for d in decisions] == ["r0", "r1", "r2"]
    assert [d["decision"] for d in decisions] == ["allow", "deny", "modify"]


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "metadata: {id: p}\nrules:\n  - id: r\n    condition: \"user.id == 'blocked'\"\n"
        "    action: {decision: deny}\n"
    )
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "".join(json.dumps({"context": {"user": {"id": "u"}}}) + "\n" for _ in range(300))
    )
    args = [str(SCRIPT), "evaluate", "batch", "--policies", str(policy), str(requests)]

    piped = subprocess.run(args, capture_output=True, text=True, env=clean_env(), check=False)
    assert piped.returncode == 0
    assert piped.stderr == ""
    assert len(piped.stdout.splitlines()) == 300

    returncode, stdout, seen = run_with_stderr_on_a_terminal(args)
    assert returncode == 0
    assert b"evaluating" in seen
    assert b"300/300" in seen
    lines = stdout.splitlines()
    assert len(lines) == 300
    assert all(json.loads(line)["decision"] == "allow" for line in lines)


def run_with_stderr_on_a_terminal(args: list[str]) -> tuple[int, str, bytes]:
    """Run `args` with stderr on a pseudo-terminal: exit code, stdout, what the terminal got."""
    main, replica = pty.openpty()
    with_tty = subprocess.run(
        args, stdout=subprocess.PIPE, stderr=replica, env=clean_env(), check=False, text=True
    )
    os.close(replica)
    seen = b""
    while select.select([main], [], [], 0.5)[0]:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal is closed once everything was read
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    return with_tty.returncode, with_tty.stdout, seen


def test_export_shows_progress_only_on_a_terminal(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for i in range(40):
        (policies / f"p{i}.yaml").write_text(
            f"metadata: {{id: p{i}}}\nrules:\n  - id: r\n    action: {{decision: allow}}\n"
        )
    out = tmp_path / "out"
    args = [str(SCRIPT), "policy", "export", "--policies", str(policies), "--dir", str(out)]

    piped = subprocess.run(args, capture_output=True, text=True, env=clean_env(), check=False)
    assert piped.returncode == 0
    assert piped.stderr == f"exported 40 policies to {out}\n"
    assert len(list(out.iterdir())) == 40

    returncode, stdout, seen = run_with_stderr_on_a_terminal(args)
    assert (returncode, stdout) == (0, "")
    assert b"exporting" in seen
    assert b"40/40" in seen


def test_batch_stops_quietly_when_the_reader_goes_away(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("metadata: {id: p}\nrules: []\n")
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"context": {}}\n' * 20_000)
    proc = subprocess.Popen(
        [str(SCRIPT), "evaluate", "batch", "--policies", str(policy), str(requests)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    first = proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    code = proc.wait(timeout=120)
    errors = proc.stderr.read()
    proc.stderr.close()
    assert json.loads(first)["decision"] == "allow"
    assert code == 0
    assert errors == b""
