"""Faults under mixed load, against a deployment of our own (reliability/stack.py).

For each fault: the load runs `before` seconds, the fault lasts `hold` seconds, then the
load runs until the service recovered and `after` seconds more. Then the load stops, the
decision logs drain, and the run counts, from the database itself (not through the proxy):

- failed evaluations (HTTP, batch items, gRPC stream): anything but the right decision;
- decision-log records lost: answered decisions whose request id is not in decision_log;
- audit events lost: answered decisions whose event never reached the local Governance
  (the servers' audit outboxes deliver to a Receiver of the run; repeats are counted apart);
- acknowledged policy writes lost: answered revisions not in policy_revisions as written;
- recovery: seconds from the end of the fault to the first acknowledged policy write.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from load import Load
from policy_cli.testing import server_workers
from stack import Backends, Stack
from tcp_proxy import ProxyControl


@dataclass(frozen=True)
class Fault:
    name: str
    deployment: str
    inject: Callable[[Stack], Awaitable[None]]
    heal: Callable[[Stack], Awaitable[None]]


async def _pg_stop(stack: Stack) -> None:
    assert stack.pg is not None
    await asyncio.to_thread(stack.pg.stop, "immediate")  # like a crash


async def _pg_start(stack: Stack) -> None:
    assert stack.pg is not None
    await asyncio.to_thread(stack.pg.start)


async def _redis_stop(stack: Stack) -> None:
    assert stack.redis is not None
    await asyncio.to_thread(stack.redis.stop)


async def _redis_start(stack: Stack) -> None:
    assert stack.redis is not None
    await asyncio.to_thread(stack.redis.start)


async def _kill_worker(stack: Stack) -> None:
    assert stack.http is not None
    # A worker itself: not the parent's multiprocessing helper nor a worker's own child
    # (the decision log's link helper), which any descendant could be.
    workers = sorted(server_workers(stack.http.proc.pid))
    if not workers:
        raise RuntimeError("no HTTP worker to kill")
    os.kill(workers[-1], signal.SIGKILL)


async def _nothing(stack: Stack) -> None:
    return None


def _stall(
    *names: str,
) -> tuple[Callable[[Stack], Awaitable[None]], Callable[[Stack], Awaitable[None]]]:
    async def pause(stack: Stack) -> None:
        assert stack.proxies is not None
        control = ProxyControl(stack.proxies.control)
        for name in names:
            await control.send("pause", name)

    async def cut_and_resume(stack: Stack) -> None:
        assert stack.proxies is not None
        control = ProxyControl(stack.proxies.control)
        for name in names:
            await control.send("drop", name)  # the stalled connections are gone for good
            await control.send("resume", name)

    return pause, cut_and_resume


FAULTS = [
    Fault("PostgreSQL stopped, restarted", "single", _pg_stop, _pg_start),
    Fault("HTTP worker SIGKILL", "single", _kill_worker, _nothing),
    Fault("network to PostgreSQL stalled, cut", "single", *_stall("pg")),
    Fault("PostgreSQL stopped, restarted", "cluster", _pg_stop, _pg_start),
    Fault("Redis stopped, restarted", "cluster", _redis_stop, _redis_start),
    Fault("network to PostgreSQL+Redis stalled, cut", "cluster", *_stall("pg", "redis")),
]


async def _drained_ids(url: str, prefix: str, expected: set[str], wait: float) -> set[str]:
    """The request ids of `prefix` in decision_log, once every expected one is there or
    the count stopped growing for 20 s (or after `wait` seconds)."""
    deadline = time.monotonic() + wait
    found: set[str] = set()
    last_growth = time.monotonic()
    while time.monotonic() < deadline:
        try:
            async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as conn:
                cur = await conn.execute(
                    "SELECT request_id FROM decision_log WHERE request_id LIKE %s", (prefix + "-%",)
                )
                now = {r[0] for r in await cur.fetchall()}
        except psycopg.Error:
            now = found
        if len(now) > len(found):
            last_growth = time.monotonic()
        found = now
        if expected <= found or time.monotonic() - last_growth > 20:
            break
        await asyncio.sleep(1)
    return found


async def _delivered_audit(stack: Stack, expected: set[str], wait: float) -> list[str]:
    """The audit event keys of `expected` the local Governance got (repeats included), once
    every one is there or the count stopped growing for 20 s (or after `wait` seconds)."""
    deadline = time.monotonic() + wait
    last, last_growth = -1, time.monotonic()
    while True:
        got = [k for k in stack.audit_keys() if k in expected]
        if len(got) > last:
            last, last_growth = len(got), time.monotonic()
        if expected <= set(got) or time.monotonic() > min(deadline, last_growth + 20):
            return got
        await asyncio.sleep(0.5)


async def _lost_writes(url: str, acked: list[tuple[str, int, str]]) -> int:
    if not acked:
        return 0
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT policy_id, revision, text FROM policy_revisions WHERE policy_id = %s",
            (acked[0][0],),
        )
        stored = {(r[0], r[1]): r[2] for r in await cur.fetchall()}
    return sum(1 for pid, rev, marker in acked if marker not in stored.get((pid, rev), ""))


async def run_fault(
    stack: Stack,
    fault: Fault,
    index: int,
    *,
    before: float,
    hold: float,
    after: float,
    recover_timeout: float = 90,
) -> dict[str, Any]:
    assert stack.grpc is not None
    prefix = f"f{index}"
    load = Load(stack.http_url, stack.grpc.port, stack.token, prefix)
    runner = asyncio.create_task(load.run())
    await asyncio.sleep(before)
    await fault.inject(stack)
    await asyncio.sleep(hold)
    await fault.heal(stack)
    healed = time.monotonic()
    writes_at_heal = len(load.write_ok_times)
    while (
        time.monotonic() - healed < recover_timeout and len(load.write_ok_times) == writes_at_heal
    ):
        if runner.done():
            break
        await asyncio.sleep(0.1)
    recovered = (
        round(load.write_ok_times[writes_at_heal] - healed, 2)
        if len(load.write_ok_times) > writes_at_heal
        else None
    )
    await asyncio.sleep(after)
    load.stop.set()
    await runner
    expected = set(load.decision_ids)
    found = await _drained_ids(stack.direct_database_url, prefix, expected, wait=120)
    lost_records = len(expected - found)
    audit = await _delivered_audit(stack, expected, wait=60)
    lost_writes = await _lost_writes(stack.direct_database_url, load.acked_writes)
    k = load.kinds
    evaluations = k["evaluate"].ok + k["batch"].ok + k["grpc"].ok
    failed = k["evaluate"].failed + k["batch"].failed + k["grpc"].failed
    reasons = sum((t.reasons for t in k.values()), start=type(k["evaluate"].reasons)())
    return {
        "fault": fault.name,
        "deployment": fault.deployment,
        "hold_s": hold,
        "evaluations": evaluations,
        "failed_evaluations": failed,
        "retried_after_reset": sum(t.retried for t in k.values()),
        "records_lost": lost_records,
        # the Governance audit outbox: answered decisions whose event never arrived
        "audit_lost": len(expected - set(audit)),
        "audit_repeats": len(audit) - len(set(audit)),
        "writes_acked": k["write"].ok,
        "writes_503": k["write"].unavailable,
        "writes_failed": k["write"].failed,
        "writes_lost": lost_writes,
        "writes_412": k["write"].stale,
        "statuses": {n: dict(t.statuses) for n, t in k.items() if n in ("write", "usage")},
        "usage_ok": k["usage"].ok,
        "usage_503": k["usage"].unavailable,
        "usage_failed": k["usage"].failed,
        "recovery_s": recovered,
        "reasons": dict(reasons.most_common(6)),
        "http_alive": stack.http is not None and stack.http.proc.poll() is None,
        "grpc_alive": stack.grpc.proc.poll() is None,
    }


async def run_faults(
    deployments: list[str],
    *,
    before: float,
    hold: float,
    after: float,
    only: set[str] | None = None,
    backends: Backends | None = None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    index = 0
    for deployment in deployments:
        faults = [
            f for f in FAULTS if f.deployment == deployment and (only is None or f.name in only)
        ]
        if not faults:
            continue
        stack = Stack(deployment, backends=backends, audit=True)
        try:
            await asyncio.to_thread(stack.start)
            for fault in faults:
                index += 1
                print(f"  fault {index}: {fault.name} ({deployment})", flush=True)
                result = await run_fault(stack, fault, index, before=before, hold=hold, after=after)
                print(f"    {result}", flush=True)
                results.append(result)
        finally:
            closed = await asyncio.to_thread(stack.close)
            for r in results:
                if r["deployment"] == deployment:
                    r["clean_exit"] = closed.get("http_exit") == 0 and closed.get("grpc_exit") == 0
                    # Every line the servers logged (stderr) is JSON, a fault's included.
                    r["non_json_log_lines"] = int(closed.get("http_non_json_lines", 0) or 0) + int(
                        closed.get("grpc_non_json_lines", 0) or 0
                    )
    return results
