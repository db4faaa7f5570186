"""The durable outbox and the two sinks against a local receiver (127.0.0.1).

The acceptance run (#11): 10,000 audited decisions evaluated through the
EvaluationService, Governance down for 10 s in the middle and the engine's
outbox restarted once; every event id arrives at least once and the distinct
ids are exactly the 10,000 evaluated.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from policy_core.engine import PolicyEngine
from policy_core.integrations import CallGuard
from policy_core.language import load_policy_text
from policy_core.ports import DecisionRecord, UsageEvent
from policy_core.services import EngineHolder, EvaluationRequest, EvaluationService
from policy_integrations.outbox import Outbox, Rejected
from policy_integrations.receiver import Receiver
from policy_integrations.sinks import (
    AUDIT_PATH,
    TRACK_PATH,
    PostDelivery,
    audit_body,
    governance_audit_outbox,
    track_body,
    usage_track_outbox,
)
from policy_integrations.testing import refused_url

T0 = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)

AUDITED = """\
metadata: {id: audited}
config: {audit: all}
rules:
  - id: no-gpt3
    condition: "llm.model == 'gpt-3'"
    action: {decision: deny, reason: old model}
"""


def record(request_id: str, **context: object) -> DecisionRecord:
    return DecisionRecord(
        request_id=request_id,
        policy_set="sha256:abc",
        decision="deny",
        matched_policies=("p",),
        matched_rules=("p/r",),
        reason="because",
        context_digest="",
        context=dict(context),
        detail=None,
        latency_ms=0.1,
        created_at=T0,
    )


def _files(directory: Path) -> list[Path]:
    return list(directory.iterdir())


def guard(name: str, timeout: float = 1.0) -> CallGuard:
    # A breaker that opens late: the outbox's own backoff does the pacing.
    return CallGuard(name, timeout=timeout, failures=1_000_000, cooldown=0.1)


def test_audit_body_is_the_contract() -> None:
    rec = record(
        "r-1",
        user={"id": "u1"},
        team={"id": "t1"},
        project={"id": 7},
        llm={"provider": "openai", "model": "gpt-4"},
    )
    key, body = audit_body(rec)
    assert key == "r-1"
    assert json.loads(body) == {
        "eventId": "r-1",
        "timestamp": "2026-03-14T12:00:00Z",
        "decision": "deny",
        "reason": "because",
        "policySet": "sha256:abc",
        "matchedPolicies": ["p"],
        "matchedRules": ["p/r"],
        "userId": "u1",
        "teamId": "t1",
        "projectId": "7",
        "provider": "openai",
        "model": "gpt-4",
    }
    _, bare = audit_body(record("r-2"))
    assert json.loads(bare)["userId"] is None
    assert json.loads(bare)["model"] is None


def test_track_body_is_the_contract() -> None:
    event = UsageEvent(
        request_id="q-1",
        cost=0.25,
        timestamp=T0,
        user_id="u1",
        team_id="t1",
        project_id="p1",
        provider="anthropic",
        model="claude",
        prompt_tokens=10,
        completion_tokens=20,
    )
    key, body = track_body(event)
    assert key == "q-1"
    assert json.loads(body) == {
        "requestId": "q-1",
        "userId": "u1",
        "teamId": "t1",
        "projectId": "p1",
        "provider": "anthropic",
        "model": "claude",
        "promptTokens": 10,
        "completionTokens": 20,
        "cost": 0.25,
        "timestamp": "2026-03-14T12:00:00Z",
    }


async def test_audit_sink_delivers_with_idempotency_key(tmp_path: Path) -> None:
    async with Receiver() as governance:
        outbox, delivery = governance_audit_outbox(
            governance.url, tmp_path, guard("governance"), token="s3cret"
        )
        await outbox.start()
        for i in range(50):
            outbox.submit(record(f"r{i}", user={"id": "u"}))
        assert await outbox.drain(30)
        await outbox.close()
        await delivery.close()
    assert sorted(governance.keys(AUDIT_PATH)) == sorted(f"r{i}" for i in range(50))
    assert {b["eventId"] for b in governance.bodies(AUDIT_PATH)} == {f"r{i}" for i in range(50)}
    assert all(h["Authorization"] == "Bearer s3cret" for h in governance.headers)
    status = outbox.status()
    assert status.depth == 0
    assert status.delivered == {"ok": 50}
    assert not any(p.suffix == ".seg" for p in _files(tmp_path))  # delivered: deleted


async def test_usage_sink_delivers_track(tmp_path: Path) -> None:
    async with Receiver() as costops:
        outbox, delivery = usage_track_outbox(costops.url, tmp_path, guard("costops"))
        await outbox.start()
        outbox.submit(UsageEvent(request_id="q1", cost=1.5, timestamp=T0, model="m"))
        assert await outbox.drain(30)
        await outbox.close()
        await delivery.close()
    (got,) = costops.received[TRACK_PATH]
    assert got.key == "q1"
    assert got.body["cost"] == 1.5
    assert got.body["model"] == "m"


async def test_a_refused_event_is_kept_aside_not_dropped(tmp_path: Path) -> None:
    async with Receiver() as governance:
        governance.fail_with = 400
        outbox, delivery = governance_audit_outbox(governance.url, tmp_path, guard("governance"))
        await outbox.start()
        outbox.submit(record("bad"))
        assert await outbox.drain(30)
        await outbox.close()
        await delivery.close()
    kept = (tmp_path / "rejected.jsonl").read_bytes().splitlines()
    assert len(kept) == 1
    assert b'"bad"' in kept[0]
    assert outbox.status().delivered == {"rejected": 1}


async def test_unreachable_then_up_delivers_everything(tmp_path: Path) -> None:
    url = await refused_url()
    port = int(url.rsplit(":", 1)[1])
    outbox, delivery = governance_audit_outbox(
        url, tmp_path, guard("governance", 0.5), retry_max=0.2
    )
    await outbox.start()
    for i in range(30):
        outbox.submit(record(f"e{i}"))
    await asyncio.sleep(0.5)
    status = outbox.status()
    assert status.depth == 30
    assert status.delivered.get("error", 0) >= 1
    async with Receiver(port) as governance:
        assert await outbox.drain(30)
    await outbox.close()
    await delivery.close()
    assert set(governance.keys(AUDIT_PATH)) == {f"e{i}" for i in range(30)}


async def test_memory_is_bounded_and_nothing_is_lost_on_restart(tmp_path: Path) -> None:
    delivered: list[str] = []

    async def deliver(key: str, body: bytes) -> None:
        delivered.append(key)

    def encode(item: str) -> tuple[str, bytes]:
        return item, json.dumps({"id": item}).encode()

    # Not started: nothing is written by a background task, so submit spills itself.
    first: Outbox[str] = Outbox("t", tmp_path, encode=encode, deliver=deliver, memory_limit=10)
    for i in range(95):
        first.submit(f"k{i}")
        assert len(first._queue) < 10
    await first.close()  # the rest is written to disk
    assert first.status().depth == 95
    second: Outbox[str] = Outbox("t", tmp_path, encode=encode, deliver=deliver)
    assert second.status().depth == 95
    await second.start()
    assert await second.drain(30)
    await second.close()
    assert delivered == [f"k{i}" for i in range(95)]


async def test_a_torn_line_is_kept_aside(tmp_path: Path) -> None:
    (tmp_path / "000000000001.open").write_bytes(b'["a",{"x":1}]\n["b",{"x"')
    got: list[str] = []

    async def deliver(key: str, body: bytes) -> None:
        got.append(key)

    box: Outbox[str] = Outbox("t", tmp_path, encode=lambda s: (s, b"{}"), deliver=deliver)
    await box.start()
    assert await box.drain(30)
    await box.close()
    assert got == ["a"]
    assert (tmp_path / "rejected.jsonl").read_bytes() == b'["b",{"x"\n'


@settings(max_examples=25, deadline=None)
@given(
    keys=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=40),
    failures=st.sets(st.integers(0, 39)),
    restart_at=st.integers(0, 40),
)
def test_every_key_arrives_at_least_once(
    tmp_path_factory: pytest.TempPathFactory,
    keys: list[str],
    failures: set[int],
    restart_at: int,
) -> None:
    """Whatever fails once and wherever the restart falls, each submitted key arrives."""
    directory = tmp_path_factory.mktemp("outbox")
    arrived: list[str] = []
    attempts: dict[str, int] = {}
    failing = {keys[i] for i in failures if i < len(keys)}

    async def deliver(key: str, body: bytes) -> None:
        attempts[key] = attempts.get(key, 0) + 1
        if key in failing and attempts[key] == 1:
            raise ConnectionError("down")
        if key.startswith("x"):
            raise Rejected("no")
        arrived.append(key)

    def encode(item: str) -> tuple[str, bytes]:
        return item, json.dumps(item).encode()

    async def run() -> None:
        options = {"retry_initial": 0.001, "retry_max": 0.002, "flush_interval": 0.001}
        box: Outbox[str] = Outbox("p", directory, encode=encode, deliver=deliver, **options)
        await box.start()
        for key in keys[:restart_at]:
            box.submit(key)
        await asyncio.sleep(0.005)
        await box.close()
        box = Outbox("p", directory, encode=encode, deliver=deliver, **options)
        await box.start()
        for key in keys[restart_at:]:
            box.submit(key)
        assert await box.drain(30)
        await box.close()

    asyncio.run(run())
    kept = (
        (directory / "rejected.jsonl").read_text()
        if (directory / "rejected.jsonl").exists()
        else ""
    )
    for key in keys:
        assert key in arrived or (key.startswith("x") and json.dumps(key) in kept)


async def test_acceptance_10000_audited_decisions_governance_down_and_restart(
    tmp_path: Path,
) -> None:
    """Issue 11: 10,000 audited decisions, Governance down 10 s mid-run, one restart."""
    total = 10_000
    governance = await Receiver().start()
    port = governance.port
    holder = EngineHolder()
    holder.swap(PolicyEngine(load_policy_text(AUDITED)))

    def open_outbox() -> tuple[Outbox[DecisionRecord], PostDelivery]:
        return governance_audit_outbox(
            governance.url, tmp_path / "outbox", guard("governance"), retry_max=1.0
        )

    outbox, delivery = open_outbox()
    await outbox.start()
    service = EvaluationService(holder, governance=outbox)
    models = ("gpt-3", "gpt-4")
    ids: list[str] = []

    async def evaluate(start: int, stop: int) -> None:
        for i in range(start, stop):
            rid = f"req-{i:05d}"
            ids.append(rid)
            context = {"user": {"id": f"u{i % 7}"}, "llm": {"model": models[i % 2]}}
            await service.evaluate(EvaluationRequest(context=context, request_id=rid))
            if i % 200 == 0:
                await asyncio.sleep(0)  # let the outbox's tasks run, as a server would

    await evaluate(0, 3_000)
    first = governance
    await first.stop()  # Governance goes down for 10 s...
    await evaluate(3_000, 5_000)
    # ...and the engine restarts meanwhile: the outbox is closed, a new one opens the directory.
    await outbox.close()
    await delivery.close()
    outbox, delivery = open_outbox()
    await outbox.start()
    service = EvaluationService(holder, governance=outbox)
    await evaluate(5_000, 7_000)
    await asyncio.sleep(10)
    assert outbox.status().depth > 0  # nothing could be delivered while it was down
    second = await Receiver(port).start()
    await evaluate(7_000, total)
    assert await outbox.drain(120)
    await outbox.close()
    await delivery.close()
    await second.stop()
    arrived = first.keys(AUDIT_PATH) + second.keys(AUDIT_PATH)
    assert len(ids) == total
    assert set(ids) <= set(arrived)  # every event id at least once
    assert len(set(arrived)) == total  # and exactly the 10,000 evaluated
    print(
        f"\n{total} audited decisions: {len(arrived)} deliveries, "
        f"{len(set(arrived))} distinct ids, {len(arrived) - len(set(arrived))} duplicates; "
        f"outbox outcomes {outbox.status().delivered}"
    )


def test_each_process_claims_its_own_slot(tmp_path: Path) -> None:
    """Workers on one data directory never share an outbox; a released slot is taken again."""
    from policy_integrations.outbox import claim_slot

    first = claim_slot(tmp_path)
    second = claim_slot(tmp_path)
    assert (first.path.name, second.path.name) == ("slot-0", "slot-1")
    first.release()
    again = claim_slot(tmp_path)
    assert again.path.name == "slot-0"  # what the first left is delivered by whoever takes it
    second.release()
    again.release()


def test_a_claim_takes_over_the_segments_of_free_slots(tmp_path: Path) -> None:
    """Fewer workers than last time: the segments of slots no one claims are not stranded."""
    from policy_integrations.outbox import claim_slot

    for n, keys in ((0, ["a"]), (1, ["b", "c"]), (2, ["d"])):
        slot = tmp_path / f"slot-{n}"
        slot.mkdir()
        for seq, key in enumerate(keys, start=1):
            (slot / f"{seq:012d}.seg").write_bytes(f'["{key}",{{}}]\n'.encode())
    (tmp_path / "slot-1" / "000000000009.open").write_bytes(b'["e",{}]\n')  # cut by a crash
    busy = claim_slot(tmp_path)  # slot-0, held by a live worker: left alone
    mine = claim_slot(tmp_path, adopt=True)
    assert mine.path.name == "slot-1"
    assert mine.adopted == 1  # slot-2's one segment
    got: list[str] = []

    async def deliver(key: str, body: bytes) -> None:
        got.append(key)

    async def run() -> None:
        box: Outbox[str] = Outbox("t", mine.path, encode=lambda s: (s, b"{}"), deliver=deliver)
        await box.start()
        assert await box.drain(30)
        await box.close()

    asyncio.run(run())
    assert got == ["b", "c", "e", "d"]  # its own segments first, then the adopted ones
    assert [p.name for p in (tmp_path / "slot-0").glob("*.seg")] == ["000000000001.seg"]
    assert not list((tmp_path / "slot-2").glob("*.seg"))
    busy.release()
    mine.release()


async def test_a_refused_disk_write_waits_in_memory_then_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk refuses writes (full): submit neither raises nor drops; the writer retries."""
    import errno
    import os

    got: list[str] = []
    full = True
    real_write = os.write

    async def deliver(key: str, body: bytes) -> None:
        got.append(key)

    box: Outbox[str] = Outbox(
        "t", tmp_path, encode=lambda s: (s, b"{}"), deliver=deliver, flush_interval=0.005
    )

    def write(fd: int, data: bytes) -> int:
        if full and fd == box._fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    box.submit("held-1")
    box.submit("held-2")  # queued behind the first, not written on its own
    assert list(box._queue) == ["held-1", "held-2"]
    assert box.status().depth == 2
    full = False
    await box.start()
    assert await box.drain(30)
    await box.close()
    assert got == ["held-1", "held-2"]


async def test_the_writer_opens_the_next_segment_ahead_of_submit(tmp_path: Path) -> None:
    """Creating a file costs tens of µs: the writer task does it, not the request's submit."""
    got: list[str] = []

    async def deliver(key: str, body: bytes) -> None:
        got.append(key)

    box: Outbox[str] = Outbox(
        "t", tmp_path, encode=lambda s: (s, b"{}"), deliver=deliver, flush_interval=0.005
    )
    await box.start()

    def ready() -> bool:
        return box._fd >= 0 and box._open is not None and not box._open.count

    for round_ in range(3):
        for _ in range(10_000):  # the writer opens one within a few turns; this only bounds it
            if ready():
                break
            await asyncio.sleep(0.005)
        assert box._open is not None
        assert ready()
        ahead = box._open.path
        assert box.status().depth == 0
        assert box.status().oldest_age_seconds == 0.0
        box.submit(f"k{round_}")
        assert box._open is not None
        assert box._open.path == ahead  # written to the one opened ahead, none created
        assert await box.drain(30)
    await box.close()
    assert got == ["k0", "k1", "k2"]
    assert not [p for p in _files(tmp_path) if p.suffix == ".open"]  # the empty one is gone
