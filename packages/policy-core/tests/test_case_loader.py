"""The language case file loader and comparison (policy_core.testing.cases)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from policy_core.errors import PolicyNotFound
from policy_core.testing.cases import (
    CaseFileError,
    CaseOptions,
    ExpectedIssue,
    LanguageCase,
    check_issues,
    compare_decision,
    load_case_file,
    load_case_files,
    run_case,
)

REPO = Path(__file__).resolve().parents[3]

FILE = """\
description: two cases sharing one policy text
policies: |
  metadata: {id: p}
  rules: [{id: r, action: {decision: deny}}]
cases:
  - name: uses the file policies
    context: {user: {id: u1}}
    options:
      policies: [p]
      facts: [{fact: [rate_limit.count, u1, 1m], value: 3}]
    expect: {decision: deny}
  - name: has its own policies
    policies: |
      metadata: {id: q}
      rules: []
    expect_error: PolicyNotFound
    xfail: not yet
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_cases_resolve_their_policies_and_options(tmp_path: Path) -> None:
    first, second = load_case_file(write(tmp_path, FILE), tmp_path)
    assert first.id == "c.yaml::uses the file policies"
    assert first.policies.startswith("metadata: {id: p}")
    assert first.options.policies == ("p",)
    assert first.options.fact_map() == {("rate_limit.count", "u1", "1m"): 3}
    assert first.evaluates
    assert second.policies.startswith("metadata: {id: q}")
    assert second.expect_error == "PolicyNotFound"
    assert second.xfail == "not yet"
    assert second.options.fact_map() is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (FILE.replace("    expect: {decision: deny}", "    expcet: {decision: deny}"), "expcet"),
        (FILE.replace("has its own policies", "uses the file policies"), "used twice"),
        (FILE.replace("    expect: {decision: deny}\n", ""), "expects nothing"),
        (
            FILE.replace("    expect_error: PolicyNotFound", "    expect_error: X\n    expect: {}"),
            "only one of",
        ),
        ("description: x\ncases: [{name: n, expect: {}}]\n", "no policies"),
        ("description: [unclosed\n", "c.yaml"),
    ],
)
def test_malformed_case_files_name_the_file_and_reason(
    tmp_path: Path, text: str, reason: str
) -> None:
    with pytest.raises(CaseFileError, match=r"c\.yaml") as info:
        load_case_file(write(tmp_path, text), tmp_path)
    assert reason in str(info.value)


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError, match="no case files"):
        load_case_files(tmp_path)


def test_the_repository_case_files_load_with_unique_ids() -> None:
    cases = load_case_files(REPO / "tests" / "cases")
    ids = [c.id for c in cases]
    assert len(ids) >= 100
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ({"decision": "deny"}, {"decision": "deny"}, True),
        ({"modifications": {"n": 1}}, {"modifications": {"n": 1.0}}, True),
        ({"metadata": {"flag": True}}, {"metadata": {"flag": 1}}, False),
        ({"metadata": {"n": 1}}, {"metadata": {"n": True}}, False),
        ({"matched_rules": ["a", "b"]}, {"matched_rules": ("a", "b")}, True),
        ({"matched_rules": ["a", "b"]}, {"matched_rules": ["b", "a"]}, False),
        ({"metadata": {}}, {"metadata": {"extra": 1}}, False),
        ({"shadow": {"decision": "deny"}}, {"shadow": {"decision": "deny", "x": 1}}, True),
        ({"shadow": {"decision": "deny"}}, {"shadow": None}, False),
        ({"shadow": None}, {"shadow": None}, True),
        ({"errors": [{"rule": "r"}]}, {"errors": [{"rule": "r", "message": "m"}]}, True),
        ({"errors": [{"rule": "r"}]}, {"errors": []}, False),
        ({"trace": [{"result": "matched"}]}, {"trace": [{"result": "error"}]}, False),
        ({"nope": 1}, {"decision": "allow"}, False),
    ],
)
def test_compare_decision(expected: dict[str, Any], actual: dict[str, Any], ok: bool) -> None:
    assert (compare_decision(expected, actual) == []) is ok


def test_check_issues_matches_position_and_message_substring() -> None:
    got = [{"line": 4, "column": 22, "message": "comparisons do not chain"}]
    assert check_issues([ExpectedIssue(line=4, column=22, message="chain")], got) == []
    assert check_issues([ExpectedIssue(line=4)], got) == []
    assert check_issues([ExpectedIssue(line=4, column=21)], got) != []
    assert check_issues([ExpectedIssue(line=4, message="unknown")], got) != []
    assert check_issues([], got) == [f"expected no issue, got: 4:22: {got[0]['message']}"]
    assert check_issues([], []) == []


def _case(**kw: Any) -> LanguageCase:
    base: dict[str, Any] = {
        "file": "f.yaml",
        "name": "n",
        "policies": "x",
        "context": {},
        "options": CaseOptions(),
    }
    return LanguageCase(**(base | kw))


def test_run_case_compares_the_decision() -> None:
    def evaluate(case: LanguageCase) -> Mapping[str, Any]:
        return {"decision": "deny", "matched_rules": ["p/r"]}

    assert run_case(_case(expect={"decision": "deny"}), evaluate) == []
    assert run_case(_case(expect={"decision": "allow"}), evaluate) == [
        'decision: expected "allow", got "deny"'
    ]


def test_run_case_expected_error_by_class_name() -> None:
    def evaluate(case: LanguageCase) -> Mapping[str, Any]:
        raise PolicyNotFound("nope")

    assert run_case(_case(expect_error="PolicyNotFound"), evaluate) == []
    assert run_case(_case(expect_error="PolicyEngineError"), evaluate) == []
    [mismatch] = run_case(_case(expect={"decision": "deny"}), evaluate)
    assert mismatch.startswith("evaluate raised PolicyNotFound")


def test_run_case_load_errors_and_warnings() -> None:
    def evaluate(case: LanguageCase) -> Mapping[str, Any]:
        raise AssertionError("a load-error case must not evaluate")

    issue = [{"line": 2, "column": 3, "message": "unknown key 'priorty'"}]
    case = _case(expect_load_error=(ExpectedIssue(line=2, message="priorty"),))
    assert run_case(case, evaluate, load_issues=lambda c: issue) == []
    assert run_case(case, evaluate, load_issues=lambda c: []) == [
        "expected a load error, but the policies loaded"
    ]
    assert run_case(case, evaluate) == ["this target cannot check load errors"]
    warned = _case(expect_warnings=())
    assert run_case(warned, evaluate, warnings=lambda c: []) == []
    assert run_case(warned, evaluate, warnings=lambda c: issue) != []
    assert run_case(warned, evaluate) == ["this target cannot check warnings"]


def test_a_target_without_warnings_still_checks_the_evaluation() -> None:
    case = _case(expect={"decision": "warn"}, expect_warnings=(ExpectedIssue(line=3),))
    assert run_case(case, lambda c: {"decision": "warn"}) == []
    assert run_case(case, lambda c: {"decision": "deny"}) != []
    assert run_case(case, lambda c: {"decision": "warn"}, warnings=lambda c: []) != []
