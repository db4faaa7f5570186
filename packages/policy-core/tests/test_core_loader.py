"""Loader: files, directories, JSON and YAML, positions inside expressions, every issue at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from policy_core import PolicyLoadError, load_policies, load_policy_text, validate_policy_text

POLICY = """\
metadata: {id: p1}
rules:
  - id: r1
    condition: "user.id == 'u1'"
    action: {decision: deny}
"""


def _issues(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_text(text, file="t.yaml")
    return [(i.line, i.column, i.message) for i in info.value.issues]


def test_loads_a_directory_recursively_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.yml").write_text(POLICY.replace("p1", "p2"))
    (tmp_path / "one.yaml").write_text(POLICY)
    (tmp_path / "notes.txt").write_text("not a policy")
    assert [p.id for p in load_policies(tmp_path)] == ["p2", "p1"]
    assert [p.id for p in load_policies([tmp_path / "one.yaml"])] == ["p1"]


def test_duplicate_ids_across_files_name_the_first(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POLICY)
    (tmp_path / "b.yaml").write_text(POLICY)
    with pytest.raises(PolicyLoadError) as info:
        load_policies(tmp_path)
    (issue,) = info.value.issues
    assert issue.file.endswith("b.yaml")
    assert (issue.line, issue.column) == (1, 16)
    assert "a.yaml:1" in issue.message


def test_missing_path_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="no such file"):
        load_policies(tmp_path / "absent.yaml")


def test_json_array_and_yaml_streams_hold_several_documents() -> None:
    docs = [{"metadata": {"id": "a"}, "rules": []}, {"metadata": {"id": "b"}, "rules": []}]
    assert [p.id for p in load_policy_text(json.dumps(docs))] == ["a", "b"]
    assert [p.id for p in load_policy_text(POLICY + "---\n" + POLICY.replace("p1", "p3"))] == [
        "p1",
        "p3",
    ]


def test_yaml_1_2_keeps_on_and_yes_as_strings() -> None:
    text = POLICY.replace("user.id == 'u1'", "user.flag == 'on'")
    (policy,) = load_policy_text(text)
    assert policy.rules[0].condition == "user.flag == 'on'"
    (policy,) = load_policy_text("metadata: {id: p, description: yes}\nrules: []\n")
    assert policy.metadata.description == "yes"


def test_every_problem_is_reported_sorted() -> None:
    text = """\
metadata: {id: p, priorty: 3}
rules:
  - id: r1
    condition: "user.id == "
    action: {decision: maybe}
  - id: r1
    action: {decision: allow, modifications: {llm.model: x}}
"""
    issues = _issues(text)
    assert [(line, col) for line, col, _ in issues] == sorted(
        (line, col) for line, col, _ in issues
    )
    messages = " | ".join(m for _, _, m in issues)
    for fragment in (
        "unknown key 'priorty'",
        "unexpected end",
        "decision must be one of",
        "duplicate rule id 'r1'",
        "only allowed with decision: modify",
    ):
        assert fragment in messages


def test_expression_errors_point_into_the_file() -> None:
    plain = "metadata: {id: p}\nrules:\n  - id: r\n    condition: user.id = 1\n    action: {decision: deny}\n"
    assert _issues(plain)[0][:2] == (4, 24)
    quoted = 'metadata: {id: p}\nrules:\n  - id: r\n    condition: "user.id = 1"\n    action: {decision: deny}\n'
    assert _issues(quoted)[0][:2] == (4, 25)
    block = "metadata: {id: p}\nrules:\n  - id: r\n    condition: |\n      user.id == 1 &&\n        nope(2)\n    action: {decision: deny}\n"
    assert _issues(block)[0][:2] == (6, 9)


def test_str_of_the_error_prints_one_line_per_issue() -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_text("metadata: {id: 'bad id'}\nrules: x\n", file="f.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith("f.yaml:") for line in lines)


def test_warnings_for_dead_and_shadowed_rules() -> None:
    text = """\
metadata: {id: p}
rules:
  - {id: never, condition: "1 == 2", action: {decision: deny}}
  - {id: wall, action: {decision: deny}}
  - {id: later, condition: "user.id == 'x'", action: {decision: allow}}
"""
    report = validate_policy_text(text, file="w.yaml")
    found = [(w.line, w.message) for w in report.warnings]
    assert any(line == 3 and "can never match" in m for line, m in found)
    assert any(line == 5 and "shadowed" in m and "line 4" in m for line, m in found)
    assert all(w.severity == "warning" for w in report.warnings)
