"""The README, word for word: `make run`, the curl walk-through, the Python blocks, the table.

The walk-through's bash blocks are taken from README.md as written and run in
order: the first (`make run`) in the background, the rest in one bash
session (so `export TOKEN=...` carries over). Two deviations, both needed to
run beside other tests: the data dir is a fresh temporary directory
(LLM_POLICY_DATA_DIR) and the port a free one (LLM_POLICY_PORT, substituted
for 8080 in the commands).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import pytest
from policy_cli.testing import clean_env, free_port, serving

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MARKER = "@@@ end of block @@@"


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def shown(json_block: str) -> dict[str, Any]:
    """A JSON example of the README, without its `"...": "..."` ellipsis."""
    value: dict[str, Any] = json.loads(json_block)
    value.pop("...", None)
    return value


def test_readme_walkthrough(tmp_path: Path) -> None:
    walkthrough = section("Five minutes with curl")
    commands = blocks(walkthrough, "bash")
    examples = [shown(b) for b in blocks(walkthrough, "json")]
    assert commands[0].strip() == "make run"
    assert len(commands) == 5  # make run, token, create, the deny, the allow
    assert len(examples) == 2  # the deny and the allow as the README shows them

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "make-run.log"
    env = clean_env(LLM_POLICY_DATA_DIR=str(tmp_path / "data"), LLM_POLICY_PORT=str(port))
    # Ctrl-C at the end, as the README says.
    make_run = ["bash", "-c", commands[0]]
    with serving(
        make_run, port=port, env=env, log=log, cwd=ROOT, timeout=240, stop_signal=signal.SIGINT
    ):
        script = "set -e\n" + "".join(
            c.replace("127.0.0.1:8080", f"127.0.0.1:{port}") + f"\necho '{MARKER}'\n"
            for c in commands[1:]
        )
        run = subprocess.run(
            ["bash", "-c", script],
            cwd=ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        outputs = run.stdout.split(MARKER)
        token_out, created, denied, allowed = (o.strip() for o in outputs[:4])
        assert token_out == ""

        policy = json.loads(created)
        assert (policy["id"], policy["revision"]) == ("free-tier-models", 1)

        deny = json.loads(denied)
        assert deny["decision"] == "deny"
        assert deny["allowed"] is False
        assert {k: deny[k] for k in examples[0]} == examples[0]

        allow = json.loads(allowed)
        assert allow["decision"] == "allow"
        assert allow["allowed"] is True
        assert {k: allow[k] for k in examples[1]} == examples[1]

        # the OpenAPI page the banner and the README point to
        with urllib.request.urlopen(url + "/schema/swagger", timeout=10) as page:
            assert page.status == 200
        with urllib.request.urlopen(url + "/schema/openapi.json", timeout=10) as spec:
            assert "/api/v1/evaluate" in json.loads(spec.read())["paths"]
    banner = log.read_text()
    assert f"API:      {url}/api/v1" in banner
    assert f"OpenAPI:  {url}/schema/swagger" in banner
    assert "export TOKEN=" in banner
    assert f"curl -s {url}/api/v1/evaluate" in banner
    # The embedded PostgreSQL was stopped with the server; the data stays.
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()
    assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()


PYTHON_BLOCKS = blocks(README, "python")


def test_readme_embedding_shows_both_ways_to_evaluate() -> None:
    embedding = blocks(section("Embedding in Python"), "python")
    assert len(embedding) == 2
    assert "engine.evaluate(" in embedding[0]
    assert "MemoryUsageStore()" in embedding[1]  # the store is built as a reader would
    assert "evaluate_async(" in embedding[1]
    assert PYTHON_BLOCKS[:2] == embedding


@pytest.mark.parametrize(
    "snippet", PYTHON_BLOCKS, ids=[f"block{i}" for i, _ in enumerate(PYTHON_BLOCKS)]
)
def test_readme_python_blocks_print_what_they_say(snippet: str) -> None:
    """Every ```python block of the README, run as written, prints its last comment."""
    promised = snippet.rsplit("# ", 1)[1].strip()
    run = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == promised


def test_readme_configuration_table_lists_every_setting() -> None:
    from policy_cli.settings import Settings, env_name

    rows = re.findall(r"^\| `(LLM_POLICY_[A-Z_]+)` \| (.*?) \|", section("Configuration"), re.M)
    table = dict(rows)
    fields = msgspec.structs.fields(Settings)
    assert list(table) == [env_name(f.name) for f in fields]
    for f in fields:
        default = f.default
        if default is None:
            assert table[env_name(f.name)] == "", f.name
        else:
            text = json.dumps(default) if isinstance(default, bool) else str(default)
            assert table[env_name(f.name)] == f"`{text}`", f.name
