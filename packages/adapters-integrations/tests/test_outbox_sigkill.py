"""A process appending to an outbox is killed with SIGKILL: no acknowledged event is lost.

Each run starts `outbox_appender.py` (a real process) on an outbox directory;
it submits audit events and prints each id once `submit` returned. The test
kills it with SIGKILL after a random number of acknowledgements (seeded: the
kill lands wherever the appender is by then: mid-append, mid-segment-rotation,
mid-delivery), then claims the dead process's slot, as its respawned worker
would, and delivers what it left to a local Receiver (127.0.0.1). Every
acknowledged id must arrive; an appender that only appended delivered
nothing itself, so the receiver gets each event exactly once; one that was
delivering may have sent part of a segment already, which is delivered again
(the receiver keeps one per Idempotency-Key): at most twice, and only ids
the killed process had sent.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
from policy_core.integrations import CallGuard
from policy_integrations.outbox import claim_slot
from policy_integrations.receiver import Receiver
from policy_integrations.sinks import AUDIT_PATH, governance_audit_outbox

APPENDER = Path(__file__).with_name("outbox_appender.py")

# (seed, mode): the seed picks the kill point and the segment size.
RUNS = [(seed, "hold" if seed % 2 == 0 else "deliver") for seed in range(8)]


@pytest.mark.parametrize(("seed", "mode"), RUNS, ids=[f"{m}-{s}" for s, m in RUNS])
async def test_sigkill_loses_no_acknowledged_event(tmp_path: Path, seed: int, mode: str) -> None:
    rng = random.Random(seed)
    segment_events = rng.choice([7, 64, 1000])
    kill_after = rng.randint(1, 4000)
    base = tmp_path / "governance_audit"
    # A live worker holds slot-0 for the whole run: its slot must be left alone.
    live = claim_slot(base)
    assert live.path.name == "slot-0"
    (live.path / "000000000001.seg").write_bytes(b'["live-1",{}]\n')
    async with Receiver() as governance:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(APPENDER),
            str(base),
            governance.url,
            mode,
            str(segment_events),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            first = (await proc.stdout.readline()).decode()
            assert first.startswith("slot "), first
            killed_slot = first.split()[1]
            acked: list[str] = []
            while len(acked) < kill_after:
                line = await proc.stdout.readline()
                assert line.endswith(b"\n"), "the appender stopped by itself"
                acked.append(line.decode().strip())
            os.kill(proc.pid, signal.SIGKILL)
            rest = await proc.stdout.read()  # printed before it died: acknowledged too
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        acked += [line.decode() for line in rest.splitlines(keepends=True) if line.endswith(b"\n")]
        acked = [a.strip() for a in acked]
        # The events the killed process delivered itself (and its in-flight requests).
        await asyncio.sleep(0)
        sent_by_killed = set(governance.keys(AUDIT_PATH))

        # Its respawned worker: claims the first free slot, the dead one's.
        slot = claim_slot(base, adopt=True)
        assert slot.path.name == killed_slot == "slot-1"
        guard = CallGuard("governance", timeout=30.0, failures=1_000_000, cooldown=0.1)
        outbox, delivery = governance_audit_outbox(governance.url, slot.path, guard)
        left = outbox.status().depth
        await outbox.start()
        assert await outbox.drain(120)
        await outbox.close()
        await delivery.close()
        slot.release()
    live.release()

    keys = governance.keys(AUDIT_PATH)
    counts = Counter(keys)
    assert set(acked) <= set(counts), f"lost: {sorted(set(acked) - set(counts))[:10]}"
    # Nothing but what the appender submitted: the acknowledged ids and at most the one
    # whose submit was under way when the kill came.
    possible = {f"e{i}" for i in range(len(acked) + 1)}
    assert set(counts) <= possible
    assert "live-1" not in counts  # the live worker's slot was not touched
    assert (live.path / "000000000001.seg").exists()
    twice = {k for k, n in counts.items() if n > 1}
    if mode == "hold":
        assert not twice  # exactly once
    else:
        assert max(counts.values()) <= 2
        assert twice <= sent_by_killed  # re-delivered only what the killed process had sent
    assert not (slot.path / "rejected.jsonl").exists()  # no line was torn by the kill
    print(
        f"\nseed {seed} {mode}: segment_events {segment_events}, killed after {len(acked)} "
        f"acknowledged, {left} left on disk, {len(sent_by_killed)} sent before the kill, "
        f"{len(keys)} deliveries, {len(twice)} ids twice"
    )
