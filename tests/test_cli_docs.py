"""Every policy example of docs/authoring.md is valid, and its test-suite example runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from policy_core.errors import PolicyLoadError
from policy_core.language import validate_policy_text

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "authoring.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(yaml|json)\n(.*?)```", GUIDE, flags=re.DOTALL)
POLICIES = [(lang, text) for lang, text in BLOCKS if "metadata" in text and "cases:" not in text]


def test_the_guide_has_examples() -> None:
    assert len(POLICIES) >= 20


@pytest.mark.parametrize(
    ("lang", "text"), POLICIES, ids=[f"block{i}" for i in range(len(POLICIES))]
)
def test_every_policy_example_is_valid(lang: str, text: str) -> None:
    if lang == "json":
        json.loads(text)
    try:
        report = validate_policy_text(text, file="docs/authoring.md")
    except PolicyLoadError as exc:
        pytest.fail(f"invalid example:\n{exc}\n---\n{text}")
    assert report.policies


def test_the_guide_test_suite_passes(tmp_path: Path) -> None:
    from policy_core.testsuite import run_suites

    (suite,) = [text for lang, text in BLOCKS if lang == "yaml" and "cases:" in text]
    path = tmp_path / "security.test.yaml"
    path.write_text(suite.replace("../../examples/policies", str(ROOT / "examples" / "policies")))
    results = run_suites([path])
    assert len(results) == 2
    assert all(r.passed for r in results), [r.diff or r.error for r in results]
