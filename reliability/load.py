"""Mixed load against a Stack: evaluations, batches, one gRPC stream, policy writes, usage records.

Every request that answered is remembered (request ids of decisions, acknowledged policy
revisions) so that the run can check afterwards that nothing acknowledged was lost.
A decision must be the right one (mallory is denied, everyone else allowed: the budget
rule fails open when its store is away). An admin write or a usage record may answer a
clear 503 while a store is down; anything else is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=15)
WRITE_POLICY = """\
metadata: {{id: {pid}, description: "write {seq}"}}
config: {{cache_ttl_seconds: 0}}
rules:
  - id: never
    condition: "user.id == 'w-{seq}'"
    action: {{decision: deny, reason: write {seq}}}
"""


def _expected(user: str) -> str:
    return "deny" if user == "mallory" else "allow"


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    retried: int = 0  # a connection reset (the worker that held it was killed), sent again
    unavailable: int = 0  # a clear 503 (admin writes and usage only)
    stale: int = 0  # 412: a write answered 503 or never answered had landed after all
    reasons: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)  # every answer, for the report
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (time, seconds)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.reasons[reason[:120]] += 1


class Load:
    def __init__(
        self,
        http_url: str,
        grpc_port: int,
        token: str,
        prefix: str,
        *,
        evaluators: int = 3,
        rate_scale: float = 1.0,
    ) -> None:
        self.url = http_url + "/api/v1"
        self.grpc_port = grpc_port
        self.prefix = prefix
        self.headers = {"Authorization": f"Bearer {token}"}
        self.token = token
        self.evaluators = evaluators
        self.scale = rate_scale
        self.stop = asyncio.Event()
        self.kinds = {k: Tally() for k in ("evaluate", "batch", "grpc", "write", "usage")}
        self.decision_ids: list[str] = []
        self.acked_writes: list[tuple[str, int, str]] = []  # (policy id, revision, description)
        self.write_ok_times: list[float] = []
        self._n = itertools.count()

    # --- helpers ----------------------------------------------------------------------

    def _context(self, n: int) -> tuple[dict[str, Any], str]:
        user = "mallory" if n % 7 == 0 else f"u{n % 50}"
        return {"user": {"id": user}, "team": {"id": "t1"}}, user

    async def _post(
        self,
        session: aiohttp.ClientSession,
        tally: Tally,
        path: str,
        body: Any,
        headers: dict[str, str] | None = None,
        method: str = "POST",
    ) -> tuple[int, Any, dict[str, str]] | None:
        """One request, sent again once after a connection reset; None when it failed.

        The second try waits a moment first: a killed worker resets every connection it
        held at once, and a retry sent in the same loop turn can be handed another pooled
        connection to that worker whose reset the client has not read yet."""
        for attempt in (1, 2):
            if attempt == 2:
                await asyncio.sleep(0.05)
            try:
                async with session.request(
                    method,
                    self.url + path,
                    json=body if isinstance(body, dict) else None,
                    data=body if isinstance(body, str) else None,
                    headers=self.headers | (headers or {}),
                    timeout=TIMEOUT,
                ) as resp:
                    payload = await resp.read()
                    tally.statuses[f"{method} {resp.status}"] += 1
                    try:
                        data = json.loads(payload) if payload else None
                    except ValueError:
                        data = payload[:200]
                    return resp.status, data, {k.lower(): v for k, v in resp.headers.items()}
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                if attempt == 1 and not isinstance(exc, aiohttp.ServerTimeoutError):
                    tally.retried += 1
                    continue
                tally.fail(type(exc).__name__)
                return None
            except TimeoutError:
                tally.fail("timeout (15 s)")
                return None
        return None

    # --- the five kinds of traffic ------------------------------------------------------

    async def evaluator(self, session: aiohttp.ClientSession) -> None:
        tally = self.kinds["evaluate"]
        while not self.stop.is_set():
            n = next(self._n)
            ctx, user = self._context(n)
            rid = f"{self.prefix}-e{n}"
            t0 = time.monotonic()
            got = await self._post(session, tally, "/evaluate", {"context": ctx, "request_id": rid})
            if got is None:
                continue
            status, data, _ = got
            if status == 200 and isinstance(data, dict) and data.get("decision") == _expected(user):
                tally.ok += 1
                tally.latencies.append((t0, time.monotonic() - t0))
                self.decision_ids.append(rid)
            else:
                tally.fail(f"{status} {str(data)[:80]}")

    async def batcher(self, session: aiohttp.ClientSession) -> None:
        tally = self.kinds["batch"]
        while not self.stop.is_set():
            items, users = [], []
            for _ in range(10):
                n = next(self._n)
                ctx, user = self._context(n)
                items.append({"context": ctx, "request_id": f"{self.prefix}-b{n}"})
                users.append(user)
            got = await self._post(session, tally, "/evaluate/batch", {"requests": items})
            if got is None:
                continue
            status, data, _ = got
            decisions = data.get("decisions") if isinstance(data, dict) else None
            if status != 200 or not isinstance(decisions, list) or len(decisions) != 10:
                tally.fail(f"{status} {str(data)[:80]}")
                continue
            for item, user, d in zip(items, users, decisions, strict=True):
                if d.get("decision") == _expected(user):
                    tally.ok += 1
                    self.decision_ids.append(item["request_id"])
                else:
                    tally.fail(f"item {str(d)[:80]}")
            await asyncio.sleep(0.05 / self.scale)

    async def writer(self, session: aiohttp.ClientSession) -> None:
        tally = self.kinds["write"]
        pid = f"{self.prefix}-policy"
        seq = 0
        etag: str | None = None
        while not self.stop.is_set():
            seq += 1
            text = WRITE_POLICY.format(pid=pid, seq=seq)
            yaml = {"Content-Type": "application/yaml"}
            if etag is None:
                got = await self._post(session, tally, "/policies", text, yaml)
                if got is not None and got[0] == 409:  # created by an answer we never saw
                    got2 = await self._post(session, tally, f"/policies/{pid}", None, method="GET")
                    if got2 is not None and got2[0] == 200:
                        etag = got2[2].get("etag")
                    elif got2 is not None and got2[0] == 503:
                        tally.unavailable += 1
                    elif got2 is not None:
                        tally.fail(f"GET {got2[0]}")
                    await asyncio.sleep(0.2 / self.scale)
                    continue
            else:
                got = await self._post(
                    session,
                    tally,
                    f"/policies/{pid}",
                    text,
                    yaml | {"If-Match": etag},
                    method="PUT",
                )
            if got is None:
                etag = await self._refresh(session, pid, etag)
            else:
                status, data, headers = got
                if status in (200, 201) and isinstance(data, dict):
                    tally.ok += 1
                    self.acked_writes.append((pid, int(data["revision"]), f"write {seq}"))
                    self.write_ok_times.append(time.monotonic())
                    etag = headers.get("etag")
                elif status == 503:
                    tally.unavailable += 1
                    etag = await self._refresh(session, pid, etag)
                elif status == 412:  # an earlier write landed after all: read the revision
                    tally.stale += 1
                    etag = await self._refresh(session, pid, etag)
                else:
                    tally.fail(f"{status} {str(data)[:80]}")
                    etag = await self._refresh(session, pid, etag)
            await asyncio.sleep(0.2 / self.scale)

    async def _refresh(
        self, session: aiohttp.ClientSession, pid: str, etag: str | None
    ) -> str | None:
        try:
            async with session.get(
                f"{self.url}/policies/{pid}", headers=self.headers, timeout=TIMEOUT
            ) as resp:
                await resp.read()
                self.kinds["write"].statuses[f"refresh GET {resp.status}"] += 1
                if resp.status == 200:
                    return resp.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError):
            pass
        return etag

    async def usage(self, session: aiohttp.ClientSession) -> None:
        tally = self.kinds["usage"]
        while not self.stop.is_set():
            got = await self._post(session, tally, "/usage", {"key": "team:t1", "usd": 0.01})
            if got is not None:
                if got[0] == 200:
                    tally.ok += 1
                elif got[0] == 503:
                    tally.unavailable += 1
                else:
                    tally.fail(f"{got[0]} {str(got[1])[:80]}")
            await asyncio.sleep(0.05 / self.scale)

    async def grpc_stream(self) -> None:
        """One EvaluatePolicyStream; reopened (and counted) when the server ends it."""
        from grpclib.client import Channel
        from policy_grpc._generated.llm_policy.v1 import (
            EvaluatePolicyRequest,
            EvaluatePolicyStreamRequest,
            PolicyServiceStub,
        )

        tally = self.kinds["grpc"]
        while not self.stop.is_set():
            channel = Channel("127.0.0.1", self.grpc_port)
            sent: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            window = asyncio.Semaphore(8)

            async def requests(
                window: asyncio.Semaphore = window, sent: asyncio.Queue[tuple[str, str]] = sent
            ) -> Any:
                while not self.stop.is_set():
                    await window.acquire()
                    n = next(self._n)
                    ctx, user = self._context(n)
                    rid = f"{self.prefix}-g{n}"
                    await sent.put((rid, user))
                    yield EvaluatePolicyStreamRequest(
                        request=EvaluatePolicyRequest(
                            request_id=rid, context_json=json.dumps(ctx).encode()
                        )
                    )
                    await asyncio.sleep(0.01 / self.scale)

            try:
                stub = PolicyServiceStub(channel)
                async for answer in stub.evaluate_policy_stream(
                    requests(), metadata={"authorization": f"Bearer {self.token}"}
                ):
                    rid, user = sent.get_nowait()
                    window.release()
                    d = answer.decision
                    if d is not None and d.request_id == rid and d.decision == _expected(user):
                        tally.ok += 1
                        self.decision_ids.append(rid)
                    else:
                        tally.fail(f"grpc answer {d!r:.80}")
            except Exception as exc:
                if not self.stop.is_set():
                    tally.fail(f"stream ended: {type(exc).__name__} {str(exc)[:60]}")
                    # the unanswered ones in flight are failed evaluations too
                    tally.failed += max(sent.qsize() - 1, 0)
                    await asyncio.sleep(0.5)
            finally:
                channel.close()

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=32)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks = [asyncio.create_task(self.evaluator(session)) for _ in range(self.evaluators)]
            tasks += [
                asyncio.create_task(self.batcher(session)),
                asyncio.create_task(self.writer(session)),
                asyncio.create_task(self.usage(session)),
                asyncio.create_task(self.grpc_stream()),
            ]
            await self.stop.wait()
            done, pending = await asyncio.wait(tasks, timeout=20)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
