"""`llm-policy test`: pass/fail per case with a diff, --junit, exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

Invoke = Callable[..., Result]

SUITE = """\
policies: ../policies
cases:
  - name: SQL injection is denied
    context: {llm: {prompt: "SELECT * FROM users"}, user: {id: u1}}
    expect: {decision: deny, matched_rules: [security-policy/block-sql]}
  - name: a question is allowed
    context: {llm: {prompt: "What is a B-tree?"}}
    expect: {decision: allow}
"""

FAILING_CASE = """\
  - name: wrongly expects allow
    context: {llm: {prompt: "select a from b"}}
    expect: {decision: allow, matched_rules: []}
"""


@pytest.fixture
def suites(policy_dir: Path) -> Path:
    root = policy_dir.parent / "tests"
    root.mkdir()
    (root / "security.test.yaml").write_text(SUITE)
    return root


def test_passing_suites_exit_0(cli: Invoke, suites: Path) -> None:
    result = cli("test", str(suites))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"PASS {suites / 'security.test.yaml'} :: SQL injection is denied"
    assert lines[-1] == "2 cases, 2 passed, 0 failed"


def test_failing_case_shows_a_diff_and_exits_1(cli: Invoke, suites: Path, tmp_path: Path) -> None:
    (suites / "security.test.yaml").write_text(SUITE + FAILING_CASE)
    junit = tmp_path / "report.xml"
    result = cli("test", str(suites / "security.test.yaml"), "--junit", str(junit))
    assert result.exit_code == 1
    out = result.stdout
    assert f"FAIL {suites / 'security.test.yaml'} :: wrongly expects allow" in out
    assert "-decision: allow" in out
    assert "+decision: deny" in out
    assert out.splitlines()[-1] == "3 cases, 2 passed, 1 failed"
    report = ET.parse(junit).getroot()
    assert report.get("tests") == "3"
    assert report.get("failures") == "1"


def test_json_output_lists_case_results(cli: Invoke, suites: Path) -> None:
    (suites / "security.test.yaml").write_text(SUITE + FAILING_CASE)
    result = cli("-o", "json", "test", str(suites))
    assert result.exit_code == 1
    results = json.loads(result.stdout)
    assert [r["passed"] for r in results] == [True, True, False]
    assert '"decision": "allow"' in results[2]["diff"]


def test_suite_with_invalid_policies_exits_3(cli: Invoke, suites: Path, policy_dir: Path) -> None:
    (policy_dir / "broken.yaml").write_text("metadata: {id: b}\nrules: [{id: r}]\n")
    result = cli("test", str(suites))
    assert result.exit_code == 3
    assert "broken.yaml" in result.stderr


def test_unusable_suite_is_a_usage_error(cli: Invoke, tmp_path: Path) -> None:
    bad = tmp_path / "bad.test.yaml"
    bad.write_text("policies: nowhere\ncases: []\n")
    result = cli("test", str(bad))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad}:")
    missing = cli("test", str(tmp_path / "missing"))
    assert missing.exit_code == 2


def test_no_suite_found(cli: Invoke, tmp_path: Path) -> None:
    result = cli("test", str(tmp_path))
    assert result.exit_code == 2
    assert "no test suite found" in result.stderr


def test_default_locations(cli: Invoke, suites: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(suites.parent)
    (suites.parent / "examples").mkdir()
    moved = suites.rename(suites.parent / "examples" / "tests")
    (moved / "security.test.yaml").write_text(SUITE.replace("../policies", "../../policies"))
    result = cli("test")
    assert result.exit_code == 0
    assert "2 cases, 2 passed, 0 failed" in result.stdout
