"""docs/integrations.md, Sinks / Admission / Edge: the command it shows runs and says what it shows.

`llm-policy edge sync` runs as a process against a local Edge fake
(policy_integrations.receiver.Receiver on 127.0.0.1), over a memory store
seeded with two policies; the agent receives both documents in one sync.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from policy_cli.testing import clean_env, llm_policy
from policy_integrations.receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "integrations.md").read_text(encoding="utf-8")

SEED = {
    "deny-bad-users.yaml": """\
metadata: {id: deny-bad-users}
rules:
  - id: r
    condition: "user.id == 'bad'"
    action: {decision: deny, reason: bad user}
""",
    "warn-big.yaml": """\
metadata: {id: warn-big, priority: 5}
rules:
  - id: r
    condition: "llm.max_tokens > 4000"
    action: {decision: warn, reason: big}
""",
}


def section(title: str) -> str:
    start = DOC.index(f"\n## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end > 0 else len(DOC)]


def console(text: str) -> list[tuple[str, str]]:
    """(command, expected output) of each ```console block."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.DOTALL):
        command, _, expected = block.partition("\n")
        out.append((command.removeprefix("$ "), expected.strip()))
    return out


def test_the_doc_has_its_sections() -> None:
    for title in ("Facts", "Sinks", "Admission", "Edge"):
        assert f"\n## {title}\n" in DOC


async def test_edge_sync_as_documented(tmp_path: Path) -> None:
    ((command, expected),) = console(section("Edge"))
    assert command == "llm-policy edge sync"
    seed = tmp_path / "policies"
    seed.mkdir()
    for name, text in SEED.items():
        (seed / name).write_text(text)
    async with Receiver() as agent:
        env = clean_env(
            LLM_POLICY_DEPLOYMENT="memory",
            LLM_POLICY_SEED_POLICIES=str(seed),
            LLM_POLICY_EDGE_URL=agent.url,
            LLM_POLICY_DATA_DIR=str(tmp_path / "data"),
        )
        proc = await asyncio.create_subprocess_exec(
            *llm_policy(*command.split()[1:]),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == expected
    ((synced,),) = [agent.bodies("/api/v1/sync")]
    assert sorted(p["metadata"]["id"] for p in synced["policies"]) == ["deny-bad-users", "warn-big"]
    assert synced["policySet"].startswith("sha256:")


async def test_edge_sync_unreachable_exits_4(tmp_path: Path) -> None:
    from policy_integrations.testing import refused_url

    env = clean_env(
        LLM_POLICY_DEPLOYMENT="memory",
        LLM_POLICY_EDGE_URL=await refused_url(),
        LLM_POLICY_DATA_DIR=str(tmp_path / "data"),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "policy_cli",
        "edge",
        "sync",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 4
    assert "did not acknowledge the sync" in err.decode()
