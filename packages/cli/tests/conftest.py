"""Fixtures of the CLI tests: a clean LLM_POLICY_* environment, policies on disk, a runner."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from policy_cli.main import main

SECURITY_POLICY = r"""
metadata:
  id: security-policy
  namespace: prod
  tags: [security]
rules:
  - id: block-sql
    condition: 'llm.prompt.matches("(?i)\bselect\b.+\bfrom\b")'
    action: {decision: deny, reason: "SQL injection attempt by {{ user.id }}"}
  - id: warn-big
    condition: "llm.max_tokens > 1000"
    action: {decision: warn, reason: big completion}
"""

MODEL_POLICY = """\
metadata: {id: model-policy}
rules:
  - id: small-models-for-free
    condition: "team.tier == 'free' && llm.model == 'gpt-4o'"
    action:
      decision: modify
      reason: free tier uses the small model
      modifications: {llm.model: gpt-4o-mini}
"""

Invoke = Callable[..., Result]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come only from what each test sets (the test-suite variables stay)."""
    for name in list(os.environ):
        if name.startswith("LLM_POLICY_") and not name.startswith("LLM_POLICY_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    root.mkdir()
    (root / "security.yaml").write_text(SECURITY_POLICY)
    (root / "models.yaml").write_text(MODEL_POLICY)
    return root


@pytest.fixture
def cli() -> Invoke:
    """Run `llm-policy ARGS...`; stdout and stderr are kept apart."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, env=env, catch_exceptions=False)

    return invoke
