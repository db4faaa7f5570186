"""docs/gateways.md: its policy is valid, its Python examples print what it shows, its table is true.

The examples run as written (in a subprocess, so that their `asyncio.run` and
prints are a script's), with the placeholder addresses replaced by the fake
upstream's and a real llm-policy server's on 127.0.0.1; the remote example's
token is an API key made with the command the page names.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from policy_cli.testing import (
    ThreadedHttpServer,
    clean_env,
    http_app,
    llm_policy,
    memory_settings,
)
from policy_core import validate_policy_text
from policy_http.testing import make_token
from policy_integrations.gateways.fake_upstream import Reply, ThreadedFakeUpstream
from policy_integrations.gateways.mapping import Identity, request_context, response_section

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "gateways.md").read_text(encoding="utf-8")
KEY = "sk-" + "Q7w8E9r0" * 4
UPSTREAM_PLACEHOLDER = "http://127.0.0.1:8000/v1"
SERVER_PLACEHOLDER = "http://127.0.0.1:8080"


def _policy() -> str:
    (text,) = [b for b in re.findall(r"```yaml\n(.*?)```", DOC, re.S) if "id: gateway-example" in b]
    return text


def _examples() -> dict[str, tuple[str, str]]:
    """The client examples (code, printed text), by the client each wraps."""
    found = re.findall(r"```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", DOC, re.S)
    out = {}
    for code, printed in found:
        if "GuardedAsyncOpenAI(" in code:
            out["async-embedded"] = (code, printed)
        elif "GuardedOpenAI(" in code and "Guard.remote(" in code:
            out["sync-remote"] = (code, printed)
    assert set(out) == {"async-embedded", "sync-remote"}
    return out


def _script(body: dict[str, Any]) -> Reply | None:
    last = body["messages"][-1]["content"]
    if last == "Who do I write to?":
        return Reply(text="Write to alice@example.org.")
    if last == "What is the key?":
        return Reply(text=f"Here it is: {KEY} (keep it safe).", chunk_size=4)
    return None


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("gateway-doc-policies")
    (where / "gateway.yaml").write_text(_policy())
    return where


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedFakeUpstream]:
    with ThreadedFakeUpstream() as fake:
        fake.script = _script
        yield fake


def _run(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_policy_is_valid() -> None:
    assert validate_policy_text(_policy(), file="docs/gateways.md").warnings == ()


def test_the_embedded_async_example_prints_what_the_doc_shows(
    policies: Path, upstream: ThreadedFakeUpstream
) -> None:
    code, printed = _examples()["async-embedded"]
    assert '"policies/"' in code
    code = code.replace(UPSTREAM_PLACEHOLDER, upstream.base_url).replace(
        '"policies/"', json.dumps(str(policies))
    )
    upstream.clear()
    assert _run(code, clean_env()) == printed
    assert [r.body["max_tokens"] for r in upstream.chat_requests if not r.body.get("stream")] == [
        256
    ]


def test_the_remote_sync_example_prints_what_the_doc_shows(
    policies: Path, upstream: ThreadedFakeUpstream
) -> None:
    code, printed = _examples()["sync-remote"]
    app = http_app(memory_settings(seed_policies=str(policies)))
    with ThreadedHttpServer(app) as server:
        admin = make_token(roles=["admin"])
        command = "llm-policy apikey create gateway --role evaluator"
        assert command in DOC
        created = subprocess.run(
            [*llm_policy("-o", "json", *command.split()[1:])],
            capture_output=True,
            text=True,
            env=clean_env(LLM_POLICY_SERVER=server.url, LLM_POLICY_TOKEN=admin),
            timeout=120,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        key = json.loads(created.stdout)["key"]
        code = code.replace(UPSTREAM_PLACEHOLDER, upstream.base_url).replace(
            SERVER_PLACEHOLDER, server.url
        )
        upstream.clear()
        assert _run(code, clean_env(GATEWAY_POLICY_TOKEN=key)) == printed
    [sent] = upstream.chat_requests
    assert sent.body["max_tokens"] == 256
    assert not any(k.lower().startswith("x-llm-policy-") for k in sent.headers)


def _rows(heading: str) -> list[list[str]]:
    section = DOC.split(heading, 1)[1].split("\n## ", 1)[0]
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| from")
    ]


def test_every_context_path_of_the_table_is_filled() -> None:
    """Each path the request table names is one the mapping fills from a full request."""
    request = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "temperature": 0.5,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "user": "end",
        "metadata": {"k": "v"},
    }
    identity = Identity(
        user_id="u",
        email="e",
        roles=("r",),
        permissions=("p",),
        region="eu",
        mfa_verified=True,
        team_id="t",
        team_name="tn",
        team_tier="free",
        project_id="p",
        project_name="pn",
        environment="prod",
        key_id="k",
        ip_address="127.0.0.1",
        user_agent="ua",
        tags=("x",),
    )
    context = request_context(request, identity, request_id="rid")
    rows = _rows("## Context mapping")
    named = [
        p
        for row in rows
        if "`response." not in row[-1]
        for p in re.findall(r"`([a-z_]+\.[a-z_.*]+)`", row[-1])
    ]
    assert len(named) > 25
    for path in named:
        node: Any = context
        for part in path.rstrip(".*").split("."):
            assert isinstance(node, dict), path
            assert part in node, path
            node = node[part]
    completion = {
        "model": "m",
        "choices": [
            {
                "message": {
                    "content": "t",
                    "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2},
    }
    response = {"response": response_section(completion)}
    answered = [p for row in rows for p in re.findall(r"`(response\.[a-z_.*]+)`", row[-1])]
    assert len(answered) == 5
    for path in answered:
        node = response
        for part in path.rstrip(".*").split("."):
            assert part in node, path
            node = node[part]
