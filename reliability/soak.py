"""Soak: the peak evaluation rate of a single deployment, then half of it for a long while.

The peak is what `concurrency` closed-loop clients reach in `peak_seconds`. The soak is an
open loop at half that rate (requests leave on schedule whether or not earlier ones
answered, at most 64 in flight) for `seconds`. Sampled every 5 s: RSS and open file
descriptors of the HTTP server and its workers. Reported: the growth of RSS and fds from
the first sample of the soak (the server is warm by then: the peak run came first) to the
last, and the p50/p99 latency of the first and the last minute.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from stack import Stack

TIMEOUT = aiohttp.ClientTimeout(total=15)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _one(session: aiohttp.ClientSession, url: str, headers: dict[str, str], n: int) -> bool:
    body = {"context": {"user": {"id": f"u{n % 50}"}, "team": {"id": "t1"}}, "request_id": f"s{n}"}
    try:
        async with session.post(url, json=body, headers=headers, timeout=TIMEOUT) as resp:
            await resp.read()
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def soak(seconds: float, *, peak_seconds: float = 20, concurrency: int = 8) -> dict[str, Any]:
    stack = Stack("single")
    await asyncio.to_thread(stack.start)
    try:
        return await _soak(stack, seconds, peak_seconds, concurrency)
    finally:
        await asyncio.to_thread(stack.close)


async def _soak(
    stack: Stack, seconds: float, peak_seconds: float, concurrency: int
) -> dict[str, Any]:
    assert stack.http is not None
    server = stack.http
    url = stack.http_url + "/api/v1/evaluate"
    headers = {"Authorization": f"Bearer {stack.token}"}
    counter = iter(range(10**12))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        # 1. the peak, closed loop
        done = 0
        stop_at = time.monotonic() + peak_seconds

        async def closed() -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                if await _one(session, url, headers, next(counter)):
                    done += 1

        await asyncio.gather(*(closed() for _ in range(concurrency)))
        peak = done / peak_seconds
        rate = max(peak / 2, 1.0)

        # 2. the soak, open loop at half the peak
        samples: list[tuple[float, int, int, int]] = []  # (t, rss, fds, of which sockets)
        latencies: list[tuple[float, float]] = []
        failed = 0
        inflight = 0  # a plain count: a Semaphore here once stopped waking its waiters
        late = 0
        start = time.monotonic()
        end = start + seconds

        async def sample() -> None:
            while time.monotonic() < end:
                samples.append((time.monotonic() - start, server.rss_bytes(), *server.fds()))
                await asyncio.sleep(5)
            samples.append((time.monotonic() - start, server.rss_bytes(), *server.fds()))

        async def fire(n: int) -> None:
            nonlocal failed, inflight
            t0 = time.monotonic()
            try:
                ok = await _one(session, url, headers, n)
            finally:
                inflight -= 1
            if ok:
                latencies.append((t0 - start, time.monotonic() - t0))
            else:
                failed += 1

        sampler = asyncio.create_task(sample())
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while True:
            due = start + n / rate
            now = time.monotonic()
            if due >= end:
                break
            if due > now:
                await asyncio.sleep(due - now)
            if inflight >= 64:
                late += 1
                while inflight >= 64:  # noqa: ASYNC110 - polls a counter, no event to wait on
                    await asyncio.sleep(0.001)
            inflight += 1
            task = asyncio.create_task(fire(next(counter)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)
        await sampler
    elapsed = time.monotonic() - start
    window = min(60.0, seconds / 4)  # the first and the last minute (a quarter of a short run)
    first = [d for t, d in latencies if t < window]
    last = [d for t, d in latencies if t >= seconds - window]
    # The baseline is the first sample after the first window: the client's connections
    # (at most 64) are open by then, so what grows afterwards is the server's own.
    base = next((s for s in samples if s[0] >= window), samples[0])
    rss0, rss1 = base[1], samples[-1][1]
    fd0, fd1 = base[2], samples[-1][2]
    return {
        "seconds": round(elapsed, 1),
        "peak_rps": round(peak, 1),
        "rate_rps": round(rate, 1),
        "sent": n,
        "answered": len(latencies),
        "failed": failed,
        "achieved_rps": round(len(latencies) / elapsed, 1),
        "rss_start_mb": round(rss0 / 2**20, 1),
        "rss_end_mb": round(rss1 / 2**20, 1),
        "rss_max_mb": round(max(s[1] for s in samples) / 2**20, 1),
        "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2) if rss0 else None,
        "fds_start": fd0,
        "fds_end": fd1,
        "socket_fds_start": base[3],
        "socket_fds_end": samples[-1][3],
        "fds_max": max(x[2] for x in samples),
        "window_s": window,
        "p50_first_ms": round(1000 * _pct(first, 0.50), 2),
        "p99_first_ms": round(1000 * _pct(first, 0.99), 2),
        "p50_last_ms": round(1000 * _pct(last, 0.50), 2),
        "p99_last_ms": round(1000 * _pct(last, 0.99), 2),
        "server_alive": server.proc.poll() is None,
        "late": late,
    }
