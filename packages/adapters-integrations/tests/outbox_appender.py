"""A process that appends audit events to an outbox until it is killed (test_outbox_sigkill.py).

    python outbox_appender.py BASE URL deliver|hold SEGMENT_EVENTS

Claims a slot under BASE (prints `slot <name>`), then submits events `e0`,
`e1`, ... to a Governance audit outbox in it and prints each id once `submit`
returned: a printed id is an acknowledged event (a server would answer its
request then). With `deliver` the outbox also delivers to URL meanwhile; with
`hold` it only appends.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from policy_core.integrations import CallGuard
from policy_core.ports import DecisionRecord
from policy_integrations.outbox import claim_slot
from policy_integrations.sinks import governance_audit_outbox


def record(request_id: str) -> DecisionRecord:
    return DecisionRecord(
        request_id=request_id,
        policy_set="sha256:abc",
        decision="deny",
        matched_policies=("p",),
        matched_rules=("p/r",),
        reason="because",
        context_digest="",
        context={"user": {"id": "u1"}},
        detail=None,
        latency_ms=0.1,
        created_at=datetime.now(UTC),
    )


async def main(base: Path, url: str, mode: str, segment_events: int) -> None:
    slot = claim_slot(base, adopt=True)
    out = sys.stdout.fileno()
    os.write(out, f"slot {slot.path.name}\n".encode())
    guard = CallGuard("governance", timeout=30.0, failures=1_000_000, cooldown=0.1)
    outbox, _ = governance_audit_outbox(
        url, slot.path, guard, segment_events=segment_events, retry_max=0.2
    )
    if mode == "deliver":
        await outbox.start()
    i = 0
    while True:
        rid = f"e{i}"
        outbox.submit(record(rid))
        os.write(out, f"{rid}\n".encode())  # one write: a line is whole or absent
        i += 1
        if i % 20 == 0:
            await asyncio.sleep(0)  # the outbox's tasks run between requests, as in a server


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])))
