"""Applying store changes one policy at a time gives the engine a from-scratch build gives.

The writing instance recompiles with the changed policy and reuses the others'
parsed (and compiled) parts; another instance applies each change
notification by reading that one policy (`PolicyService.apply_change`). After
every step of a series of creates, updates, status changes, rollbacks and
deletes, both engines decide a set of generated requests exactly as an engine
built from scratch from the store's current texts does, and name the same
policy set.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest
from policy_core.engine import PolicyEngine
from policy_core.language import load_policy_text
from policy_core.memory import MemoryChangeFeed, MemoryPolicyStore, SystemClock
from policy_core.ports import PolicyChange
from policy_core.services import EngineHolder, PolicyService

MODELS = [f"model-{i}" for i in range(12)]
TEAMS = [f"team-{i}" for i in range(8)]
PROJECTS = [f"proj-{i}" for i in range(10)]


def policy_text(index: int, rules: int, variant: int) -> str:
    """Policy `index`'s YAML in its `variant`: the same ids, other models, caps and reasons."""
    rng = random.Random(index * 1000 + variant)
    lines = [
        'version: "1"',
        "metadata:",
        f"  id: part-{index}",
        f"  priority: {rng.randrange(5)}",
        f"  namespace: {'prod' if index % 2 else 'dev'}",
        "config:",
        f"  default_decision: {rng.choice(['none', 'none', 'allow', 'deny'])}",
        f"  fail_open: {rng.choice(['true', 'false'])}",
        "rules:",
    ]
    for r in range(rules):
        kind = (r + variant) % 5
        model, team, project = rng.choice(MODELS), rng.choice(TEAMS), rng.choice(PROJECTS)
        if kind == 0:
            cond = f"llm.model == '{model}' && team.tier == '{rng.choice(['free', 'pro'])}'"
        elif kind == 1:
            cond = f"team.id == '{team}' && llm.model in ['{model}', '{rng.choice(MODELS)}']"
        elif kind == 2:
            cond = f"project.id == '{project}' && llm.estimated_cost > {rng.randrange(1, 9) / 10}"
        elif kind == 3:
            cond = f"project.id == '{project}' && llm.max_tokens > {rng.choice([256, 512, 900])}"
        else:  # an error for requests without the field, and a regex
            cond = f"llm.prompt.matches('(?i)secret{rng.randrange(3)}') || llm.temperature > 0.{r}"
        decision = rng.choice(["deny", "deny", "warn", "allow"])
        lines += [
            f"  - id: r{r}",
            f"    priority: {rng.randrange(3)}",
            f'    condition: "{cond}"',
            f"    action: {{decision: {decision}, reason: 'part {index} rule {r} {{{{ llm.model }}}}'}}",
        ]
    if variant % 3 == 1:
        lines += [
            "exceptions:",
            f"  - {{id: vip, condition: \"user.id == 'u-{variant}'\", reason: vip}}",
        ]
    return "\n".join(lines) + "\n"


def contexts(count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    out = []
    for i in range(count):
        llm: dict[str, Any] = {
            "model": rng.choice(MODELS),
            "max_tokens": rng.choice([100, 300, 600, 1000]),
            "prompt": rng.choice(["hello", "my SECRET1 is", "secret2"]),
        }
        if i % 3:
            llm["temperature"] = rng.choice([0.0, 0.35, 0.9])
        out.append(
            {
                "llm": llm,
                "user": {"id": f"u-{rng.randrange(6)}"},
                "team": {"id": rng.choice(TEAMS), "tier": rng.choice(["free", "pro"])},
                "project": {"id": rng.choice(PROJECTS)},
            }
        )
    return out


CONTEXTS = contexts(150)


def decisions(engine: PolicyEngine) -> list[Any]:
    out = []
    for ctx in CONTEXTS:
        d = msgspec.to_builtins(engine.evaluate(ctx, now=1_700_000_000.0))
        d.pop("evaluation_time_ms")
        out.append(d)
    for namespace in ("prod", "dev"):
        d = msgspec.to_builtins(engine.evaluate(CONTEXTS[0], namespace=namespace, now=1.0))
        d.pop("evaluation_time_ms")
        out.append(d)
    return out


async def from_scratch(store: MemoryPolicyStore) -> PolicyEngine:
    records = sorted(await store.load_all(), key=lambda r: r.id)
    policies = [p for r in records for p in load_policy_text(r.text)]
    return PolicyEngine(policies, default_decision="allow")


def service(store: MemoryPolicyStore, feed: MemoryChangeFeed) -> PolicyService:
    return PolicyService(reader=store, writer=store, holder=EngineHolder(), feed=feed)


@pytest.mark.parametrize("rules", [3, 70])  # 70: past the rule index's threshold
async def test_incremental_engines_equal_a_from_scratch_build(rules: int) -> None:
    store, feed = MemoryPolicyStore(SystemClock()), MemoryChangeFeed()
    writer, follower = service(store, feed), service(store, feed)
    await writer.start()
    await follower.start()
    for index in range(6):
        await writer.create(policy_text(index, rules, 0))

    rng = random.Random(16)
    revisions = dict.fromkeys(range(6), 1)
    live = set(range(6))
    steps = []
    for step in range(14):
        op = ["update", "update", "status", "rollback", "delete", "create"][step % 6]
        index = rng.choice(sorted(live))
        pid = f"part-{index}"
        if op == "update":
            text = policy_text(index, rules, step + 1)
            record = await writer.update(pid, text, expected_revision=revisions[index])
        elif op == "status":
            record = await writer.set_status(pid, rng.choice(["draft", "deprecated", "active"]))
        elif op == "rollback":
            record = await writer.rollback(pid, 1)
        elif op == "delete":
            await writer.delete(pid)
            live.discard(index)
            revisions.pop(index)
            record = None
        else:
            index = max([*revisions, *live, 5]) + 1
            record = await writer.create(policy_text(index, rules, step))
            live.add(index)
        if record is not None:
            revisions[index] = record.revision
        steps.append(op)

        expected = await from_scratch(store)
        for name, svc in (("writer", writer), ("follower", follower)):
            engine = svc.holder.current
            assert engine.policy_set() == expected.policy_set(), (name, step, op)
            assert decisions(engine) == decisions(expected), (name, step, op)
    assert {"update", "status", "rollback", "delete", "create"} <= set(steps)
    assert any(d["decision"] == "deny" for d in decisions(writer.holder.current))


async def test_a_reconnected_feed_reloads_everything() -> None:
    store, feed = MemoryPolicyStore(SystemClock()), MemoryChangeFeed()
    writer, follower = service(store, feed), service(store, feed)
    await writer.start()
    await follower.start()
    await follower.close()  # misses the next two writes
    await writer.create(policy_text(0, 3, 0))
    await writer.create(policy_text(1, 3, 0))
    assert follower.holder.current.policies == ()
    await follower._on_change(PolicyChange(policy_id="*", revision=0, kind="updated", origin="x"))
    expected = await from_scratch(store)
    assert follower.holder.current.policy_set() == expected.policy_set()
    assert decisions(follower.holder.current) == decisions(expected)
