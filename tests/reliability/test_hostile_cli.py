"""Hostile files through the CLI (issue 13): alias bombs, deep nesting, invalid UTF-8 and
huge documents end in a clear message naming the limit and a usage exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from policy_cli.main import main

pytestmark = pytest.mark.reliability

POLICY = (
    "metadata: {id: p}\nrules:\n  - id: r\n    condition: 'true'\n    action: {decision: allow}\n"
)
BOMB = (
    "metadata: {id: bomb}\nx0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
    + "rules: []\n"
)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (BOMB, "more than 20000 keys and values"),
        ("x: " + "[" * 10_000 + "]" * 10_000, "at most 100 levels"),
        ('{"metadata": ' + '{"a": ' * 10_000 + "1" + "}" * 10_001, "at most 100 levels"),
        ("metadata: {id: p}\nmetadata: {id: q}\nrules: []\n", "duplicate"),
    ],
)
def test_validate_refuses_hostile_policy_files(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    code, out = run("validate", str(path))
    assert code != 0
    assert fragment in out, out
    assert "Traceback" not in out


def test_validate_refuses_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"metadata: {id: \xff}\nrules: []\n")
    code, out = run("validate", str(path))
    assert code != 0
    assert "UTF-8" in out or "utf-8" in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "deep"),
        (b'{"a": "\xff"}', "UTF-8"),
        (b'{"a": NaN}', ""),
        (b'{"a": 1e1000}', ""),
    ],
)
def test_evaluate_refuses_hostile_contexts(tmp_path: Path, raw: bytes, fragment: str) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.yaml").write_text(POLICY)
    ctx = tmp_path / "ctx.json"
    ctx.write_bytes(raw)
    code, out = run("evaluate", "run", "-p", str(policies), "-c", str(ctx))
    assert code == 2, out
    assert fragment in out, out
    assert "Traceback" not in out
