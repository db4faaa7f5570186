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


def engine_for(policy_id: str) -> object:
    from policy_core.engine import PolicyEngine
    from policy_core.language import load_policy_text

    (text,) = [t for _, t in POLICIES if re.search(rf"\bid: {re.escape(policy_id)}\b", t)]
    return PolicyEngine(load_policy_text(text, file="docs/authoring.md"))


def decide(policy_id: str, context: dict[str, object]) -> dict[str, object]:
    import msgspec

    engine = engine_for(policy_id)
    decision = engine.evaluate(context)  # type: ignore[attr-defined]
    out: dict[str, object] = msgspec.json.decode(msgspec.json.encode(decision))  # lists, not tuples
    return out


def test_what_the_guide_says_about_its_first_policy() -> None:
    free = decide(
        "no-gpt4-for-free-tier", {"llm": {"model": "gpt-4o"}, "team": {"id": "t-7", "tier": "free"}}
    )
    assert free["decision"] == "deny"
    assert free["reason"] == "GPT-4 needs a paid plan (team t-7)"
    assert free["matched_rules"] == ["no-gpt4-for-free-tier/deny-gpt4"]
    pro = decide("no-gpt4-for-free-tier", {"llm": {"model": "gpt-4o"}, "team": {"tier": "pro"}})
    assert pro["decision"] == "allow"


def test_what_the_guide_says_about_combining() -> None:
    big = decide("combining-demo", {"llm": {"max_tokens": 5000}})
    assert big["decision"] == "modify"
    assert big["warnings"] == ["Big completion"]
    assert big["modifications"] == {"llm.max_tokens": 4000}
    small = decide("combining-demo", {"llm": {"max_tokens": 100}})
    assert small["decision"] == "allow"
    assert small["matched_rules"] == ["combining-demo/default"]


def test_what_the_guide_says_about_exceptions_and_trees() -> None:
    bypass = {
        "llm": {"model": "gpt-4"},
        "user": {"team": "security", "permissions": ["security.bypass"]},
    }
    excepted = decide("exceptions-demo", bypass)
    assert excepted["matched_exceptions"] == ["exceptions-demo/security-team-bypass"]
    assert excepted["decision"] == "allow"
    assert decide("exceptions-demo", {"llm": {"model": "gpt-4"}})["decision"] == "deny"
    tree = decide(
        "tree-demo", {"llm": {"model": "gpt-4o", "max_tokens": 5000}, "user": {"roles": []}}
    )
    assert tree["decision"] == "warn"
    admin = {"llm": {"model": "gpt-4o", "max_tokens": 5000}, "user": {"roles": ["admin"]}}
    assert decide("tree-demo", admin)["decision"] == "allow"


def test_what_the_guide_says_about_the_response_phase() -> None:
    import msgspec

    engine = engine_for("answer-guard")
    context = {"user": {"id": "u1", "roles": []}, "llm": {"model": "gpt-4o"}}
    pii = engine.evaluate_response(context, {"text": "mail ann@example.com"})  # type: ignore[attr-defined]
    assert pii.decision == "warn"
    assert pii.modifications == {"response.text": "mail [REDACTED:email]"}
    tools = engine.evaluate_response(  # type: ignore[attr-defined]
        context, {"text": "", "tool_calls": [{"name": "drop_table", "arguments": {}}]}
    )
    assert tools.decision == "deny"
    assert tools.reason == "drop_table needs the dba role"
    assert engine.evaluate(context).decision == "allow"  # type: ignore[attr-defined]
    judge = engine.response_stream(context)  # type: ignore[attr-defined]
    assert judge.window == 508
    text = "hello " * 200 + "mail ann@example.com"
    released = "".join(judge.feed(text[i : i + 4]).text for i in range(0, len(text), 4))
    final = judge.close()
    assert (
        released + final.text
        == msgspec.to_builtins(final.decision)["modifications"]["response.text"]
    )
