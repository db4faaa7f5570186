"""`llm-policy serve`, two workers: one killed with SIGKILL loses no audit event it answered.

Governance (a local Receiver on 127.0.0.1) refuses every delivery (503) while
audited evaluations are answered, so each worker's outbox slot holds events on
disk; then, while 4 clients keep evaluating, a worker is killed with SIGKILL.
The server (uvicorn's supervisor) respawns it, the new worker claims the dead one's slot (the only free
one: checked through /proc, by the `.lock` each worker holds open), Governance
starts accepting, and every answered decision's audit event arrives. No timing
assertion: the waits only bound a hung test.

This is the respawn path end to end. It does not reliably catch the outbox that
kept events in memory for 20 ms (at this rate a worker holds about one such
event when killed; the run on that outbox passed):
packages/adapters-integrations/tests/test_outbox_sigkill.py is the regression
test for that (all 8 of its runs failed on it).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from policy_cli.testing import clean_env, free_port, llm_policy, server_workers, serving
from policy_integrations.receiver import ThreadedReceiver
from policy_integrations.sinks import AUDIT_PATH
from policy_postgres.testing import embedded_data_dir

ROOT = Path(__file__).resolve().parents[1]
POLICY = """\
metadata: {id: audited}
config: {audit: all, cache_ttl_seconds: 0}
rules:
  - id: no-gpt3
    condition: "llm.model == 'gpt-3'"
    action: {decision: deny, reason: old model}
"""


def audit_slot(pid: int) -> str | None:
    """The governance_audit slot whose lock `pid` holds open (None: not claimed yet)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if "/governance_audit/slot-" in target and target.endswith("/.lock"):
            return Path(target).parent.name
    return None


def evaluate(url: str, token: str, request_id: str) -> None:
    request = urllib.request.Request(
        url + "/api/v1/evaluate",
        data=json.dumps(
            {"context": {"llm": {"model": "gpt-4"}}, "request_id": request_id}
        ).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert json.loads(resp.read())["request_id"] == request_id


def test_a_killed_workers_audit_events_are_delivered_by_its_replacement() -> None:
    with embedded_data_dir() as data, ThreadedReceiver() as governance:
        seed = data / "seed.yaml"
        seed.write_text(POLICY)
        port = free_port()
        env = clean_env(
            LLM_POLICY_ENV="development",
            LLM_POLICY_DEPLOYMENT="single",
            LLM_POLICY_DATA_DIR=str(data),
            LLM_POLICY_PORT=str(port),
            LLM_POLICY_WORKERS="2",
            LLM_POLICY_SEED_POLICIES=str(seed),
            LLM_POLICY_GOVERNANCE_URL=governance.url,
        )
        token = subprocess.run(
            llm_policy("token"), env=env, capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.strip()
        governance.fail_with = 503  # nothing is delivered: every event waits in its slot
        with serving(
            llm_policy("serve"), port=port, env=env, log=data / "serve.log", cwd=ROOT
        ) as srv:
            deadline = time.monotonic() + 120
            before = server_workers(srv.proc.pid)
            assert len(before) == 2
            slots = {pid: audit_slot(pid) for pid in before}
            while None in slots.values() and time.monotonic() < deadline:
                time.sleep(0.2)
                slots = {pid: audit_slot(pid) for pid in before}
            assert sorted(slots.values()) == ["slot-0", "slot-1"], slots
            answered: list[str] = []
            stop = threading.Event()

            def load(n: int) -> None:
                # New connection per request: both workers answer some, and the kill lands
                # while requests are being answered (the old outbox lost their last ~20 ms).
                i = 0
                while not stop.is_set():
                    rid = f"k{n}-{i:05d}"
                    try:
                        evaluate(srv.url, token, rid)
                    except (OSError, http.client.HTTPException):
                        # The killed worker's connection (refused, reset, or an answer cut
                        # between its head and its body): sent again, same id.
                        continue
                    answered.append(rid)
                    i += 1

            threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            try:
                while len(answered) < 400 and time.monotonic() < deadline:
                    time.sleep(0.05)
                victim = max(before)
                victim_slot = slots[victim]
                assert victim_slot is not None
                slot_dir = data / "outbox" / "governance_audit" / victim_slot
                assert any(p.suffix in (".seg", ".open") for p in slot_dir.iterdir())
                os.kill(victim, signal.SIGKILL)
                heir = None
                while time.monotonic() < deadline:
                    now = server_workers(srv.proc.pid) - before
                    if now and audit_slot(min(now)) is not None:
                        heir = min(now)
                        break
                    time.sleep(0.2)
                assert heir is not None, (data / "serve.log").read_text()[-3000:]
                assert audit_slot(heir) == victim_slot  # the dead worker's slot, not a new one
                governance.fail_with = None
                answered_at_respawn = len(answered)
                while len(answered) < answered_at_respawn + 100 and time.monotonic() < deadline:
                    time.sleep(0.05)  # answered by both workers after the respawn too
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
            while time.monotonic() < deadline:
                if set(answered) <= set(governance.keys(AUDIT_PATH)):
                    break
                time.sleep(0.2)
            keys = governance.keys(AUDIT_PATH)
        missing = sorted(set(answered) - set(keys))
        assert not missing, f"{len(missing)} answered decisions never audited: {missing[:10]}"
        print(
            f"\n{len(answered)} answered, {len(keys)} audit deliveries, "
            f"{len(keys) - len(set(keys))} repeats; the heir took {victim_slot}"
        )
