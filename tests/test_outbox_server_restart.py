"""Issue 11 end to end: a real `llm-policy serve`, Governance down 10 s, one restart.

10,000 audited decisions answered over HTTP by a server process (memory
deployment, `LLM_POLICY_GOVERNANCE_URL` at a local `Receiver` on 127.0.0.1,
the outbox in tmp_path). After 3,000 answers Governance goes down (its site
stopped) and comes back on the same port 10 s later; after 5,000 the server
gets SIGTERM and a new one starts on the same port and outbox directory. The
client retries a request until it is answered (connection refused or a 5xx
while the server restarts), always with the same `request_id`, so exactly
10,000 decisions are answered. Then, once the outbox is empty: every answered
decision's event id (`eventId` = the request id, also the `Idempotency-Key`)
arrived at least once, and the distinct ids are exactly the 10,000.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
from policy_cli.testing import clean_env, free_port, llm_policy, wait_ready
from policy_http.testing import TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET, bearer, make_token
from policy_integrations.receiver import Receiver
from policy_integrations.sinks import AUDIT_PATH

ROOT = Path(__file__).resolve().parents[1]
TOTAL = 10_000
CONCURRENCY = 16
DOWN_AT, RESTART_AT = 3_000, 5_000
POLICY = """\
metadata: {id: audited}
config: {audit: all}
rules:
  - id: no-gpt3
    condition: "llm.model == 'gpt-3'"
    action: {decision: deny, reason: old model}
"""


def _start(env: dict[str, str], log: Path, url: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            llm_policy("serve"),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(url, proc, log, 90)
    except BaseException:
        _stop(proc)
        raise
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def _samples(text: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric family in Prometheus text."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name):
            labels, _, value = line.rpartition(" ")
            found[labels[len(name) :]] = float(value)
    return found


async def _metrics(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def _failed(text: str) -> int:
    """Failed delivery attempts of the audit sink so far (this server process)."""
    delivered = _samples(text, "llm_policy_outbox_delivered_total")
    return int(sum(v for k, v in delivered.items() if "governance_audit" in k and '"ok"' not in k))


async def test_10000_audited_decisions_governance_down_and_server_restarted(
    tmp_path: Path,
) -> None:
    governance = await Receiver().start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "audited.yaml").write_text(POLICY)
    env = clean_env(
        LLM_POLICY_DEPLOYMENT="memory",
        LLM_POLICY_JWT_SECRET=TEST_SECRET,
        LLM_POLICY_JWT_ISSUER=TEST_ISSUER,
        LLM_POLICY_JWT_AUDIENCE=TEST_AUDIENCE,
        LLM_POLICY_DATA_DIR=str(tmp_path / "data"),
        LLM_POLICY_OUTBOX_DIR=str(tmp_path / "outbox"),
        LLM_POLICY_SEED_POLICIES=str(seed),
        LLM_POLICY_GOVERNANCE_URL=governance.url,
        LLM_POLICY_PORT=str(port),
    )
    log = tmp_path / "server.log"
    proc = await asyncio.to_thread(_start, env, log, url)
    headers = bearer(make_token(roles=["admin"], exp_in=3600))
    answered: dict[str, str] = {}
    retries = 0
    failed_attempts = 0
    milestones = {DOWN_AT: asyncio.Event(), RESTART_AT: asyncio.Event()}
    queued: list[float] = []  # the outbox depth just before the SIGTERM
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(TOTAL):
        queue.put_nowait(i)
    models = ("gpt-3", "gpt-4")
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:

            async def evaluate(i: int) -> None:
                nonlocal retries
                rid = f"req-{i:05d}"
                body = {
                    "request_id": rid,
                    "context": {"user": {"id": f"u{i}"}, "llm": {"model": models[i % 2]}},
                }
                while True:
                    try:
                        async with session.post(url + "/api/v1/evaluate", json=body) as resp:
                            if resp.status == 200:
                                answer = await resp.json()
                                answered[answer["request_id"]] = answer["decision"]
                                return
                            assert resp.status >= 500, await resp.text()
                    except (aiohttp.ClientConnectionError, TimeoutError):
                        pass
                    retries += 1
                    await asyncio.sleep(0.05)

            async def client() -> None:
                while not queue.empty():
                    await evaluate(queue.get_nowait())
                    for at, event in milestones.items():
                        if len(answered) >= at:
                            event.set()

            async def faults() -> None:
                nonlocal proc, failed_attempts
                await milestones[DOWN_AT].wait()
                await governance.stop()  # Governance down...

                async def back() -> None:
                    await asyncio.sleep(10)
                    await governance.start()  # ...back on the same port 10 s later

                returned = asyncio.create_task(back())
                await milestones[RESTART_AT].wait()
                # ...and the server restarts meanwhile, on the same outbox directory.
                before = await _metrics(session, url)
                failed_attempts += _failed(before)
                queued.extend(_samples(before, "llm_policy_outbox_depth").values())
                # The clients keep sending: refused or failed requests are retried until answered.
                code = await asyncio.to_thread(_stop, proc)
                assert code == 0, log.read_text(errors="replace")
                proc = await asyncio.to_thread(_start, env, log, url)
                await returned

            await asyncio.gather(faults(), *(client() for _ in range(CONCURRENCY)))
            # Everything answered: wait (generously) until the outbox is empty.
            deadline = time.monotonic() + 120
            while True:
                text = await _metrics(session, url)
                depth = _samples(text, "llm_policy_outbox_depth")
                if depth and all(v == 0 for v in depth.values()):
                    break
                assert time.monotonic() < deadline, f"the outbox never emptied: {depth}"
                await asyncio.sleep(0.5)
            failed_attempts += _failed(text)
    finally:
        await asyncio.to_thread(_stop, proc)
        await governance.stop()
    arrived = governance.keys(AUDIT_PATH)
    event_ids = [b["eventId"] for b in governance.bodies(AUDIT_PATH)]
    assert arrived == event_ids  # the Idempotency-Key is the event id
    assert len(answered) == TOTAL
    assert set(answered) <= set(event_ids)  # every answered decision's event at least once
    assert len(set(event_ids)) == TOTAL  # and exactly the 10,000
    assert queued  # the depth was read before the SIGTERM
    assert queued[0] > 0  # and the restart had undelivered events to carry over
    assert log.read_text(errors="replace").count("Traceback") == 0
    print(
        f"\n{TOTAL} audited decisions over HTTP, one server restart: {len(event_ids)} "
        f"deliveries, {len(set(event_ids))} distinct ids, "
        f"{len(event_ids) - len(set(event_ids))} duplicates, {failed_attempts} failed "
        f"delivery attempts, {int(queued[0])} events queued at the SIGTERM, {retries} client "
        "retries"
    )
