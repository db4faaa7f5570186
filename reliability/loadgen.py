"""The soak's load generator, in a process of its own: the peak, then an open loop at a rate.

    python reliability/loadgen.py --port PORT --token TOKEN --seconds 600 [--rate R]

Why a process of its own, with a hand-written HTTP/1.1 client: on a loaded 2-core machine
a generator that shares its event loop with the test harness (and spends a coroutine,
an aiohttp request object and possibly a new connection per request) falls behind by
itself; it then sends late and measures from the late send, and the figures describe
the generator, not the server.

- **Connections**: `--connections` keep-alive connections, opened and used before
  anything is measured, and never more; the server's fd count is comparable from the
  first sample on.
- **Open loop, measured from the schedule**: request i is due at `start + i / rate`. Each
  connection's coroutine takes the next due request, waits for its time and sends it; the
  latency is the time from when it was *due* to its answer, so a request that waited for
  a free connection (the server was slow) counts that wait (no coordinated omission).
- **Does the generator keep up**: a ticker measures the generator's own event-loop lag,
  and the run reports how many requests left more than 50 ms after their time while a
  connection was free (the generator's fault, not the server's).

Phases: `--peak-seconds` closed loop on 8 of the connections (the peak rate), then
`--warmup` seconds at the soak rate (not measured: connections, pools and caches settle),
then `--seconds` measured. Events go to stdout as JSON lines (`{"event": ...}`), with
`time.monotonic()` times (one clock for every process of the machine); the last line is
the result.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from typing import Any

HOST = "127.0.0.1"
LATE_S = 0.05


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Connection:
    """One keep-alive HTTP/1.1 connection sending `POST /api/v1/evaluate`."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = (
            "POST /api/v1/evaluate HTTP/1.1\r\n"
            f"Host: {HOST}:{port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: {}\r\n\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened = 0

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        self.opened += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, n: int) -> bool:
        """One evaluation; True when it answered 200 with the right decision."""
        body = json.dumps(
            {"context": {"user": {"id": f"u{n % 50}"}, "team": {"id": "t1"}}, "request_id": f"s{n}"}
        ).encode()
        for attempt in (1, 2):
            try:
                if self.writer is None:
                    await self._open()
                assert self.reader is not None
                assert self.writer is not None
                self.writer.write(self.head.format(len(body)).encode() + body)
                head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 15)
                status = int(head.split(b" ", 2)[1])
                length = 0
                keep = True
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        keep = False
                payload = await asyncio.wait_for(self.reader.readexactly(length), 15)
                if not keep:
                    self.close()
                return status == 200 and b'"allow"' in payload
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                self.close()
                if attempt == 2:
                    return False
            except TimeoutError:
                self.close()
                return False
        return False


async def run(args: argparse.Namespace) -> dict[str, Any]:
    conns = [Connection(args.port, args.token) for _ in range(args.connections)]
    counter = itertools.count()
    # Open every connection and use it once: nothing opens later.
    await asyncio.gather(*(c.post(next(counter)) for c in conns))

    # 1. the peak, closed loop on 8 connections
    peak_conns = conns[: min(8, len(conns))]
    done = 0
    stop_at = time.monotonic() + args.peak_seconds

    async def closed(conn: Connection) -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            if await conn.post(next(counter)):
                done += 1

    await asyncio.gather(*(closed(c) for c in peak_conns))
    peak = done / args.peak_seconds
    rate = args.rate or max(peak / 2, 1.0)
    emit(event="peak", peak_rps=round(peak, 1), rate_rps=round(rate, 1))

    # 2. the open loop: warm-up (not measured), then the soak
    lags: list[tuple[float, float]] = []
    latencies: list[tuple[float, float]] = []  # (due, seconds from due to answer)
    failed = late = 0
    start = time.monotonic() + 0.1
    soak_start = start + args.warmup
    end = soak_start + args.seconds
    emit(event="schedule", warmup_start=start, soak_start=soak_start, end=end)
    slots = itertools.count()
    running = True

    async def ticker() -> None:
        while running:
            t = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append((t, time.monotonic() - t - 0.01))

    async def sender(conn: Connection) -> None:
        nonlocal failed, late
        while True:
            due = start + next(slots) / rate
            if due >= end:
                return
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > LATE_S and due >= soak_start:
                late += 1  # left late; its wait counts in its latency
            ok = await conn.post(next(counter))
            if due < soak_start:
                continue
            if ok:
                latencies.append((due, time.monotonic() - due))
            else:
                failed += 1

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(sender(c) for c in conns))
    running = False
    await tick
    finished = time.monotonic()
    emit(event="done", t=finished)
    opened = sum(c.opened for c in conns)
    for c in conns:
        c.close()

    window = args.window or min(60.0, args.seconds / 3)
    windows = []
    w0 = soak_start
    while w0 + window <= end + 1e-6:
        part = [d for t, d in latencies if w0 <= t < w0 + window]
        gen = [lag for t, lag in lags if w0 <= t < w0 + window]
        windows.append(
            {
                "from_s": round(w0 - soak_start, 1),
                "answered": len(part),
                "p50_ms": round(1000 * pct(part, 0.5), 2),
                "p99_ms": round(1000 * pct(part, 0.99), 2),
                "max_ms": round(1000 * max(part, default=float("nan")), 2),
                "generator_lag_p99_ms": round(1000 * pct(gen, 0.99), 2),
            }
        )
        w0 += window
    soak_lags = [lag for t, lag in lags if t >= soak_start]
    return {
        "event": "result",
        "peak_rps": round(peak, 1),
        "rate_rps": round(rate, 1),
        "connections": len(conns),
        "connections_opened": opened,
        "seconds": round(finished - soak_start, 1),
        "warmup_s": args.warmup,
        "answered": len(latencies),
        "failed": failed,
        "achieved_rps": round(len(latencies) / max(finished - soak_start, 1e-9), 1),
        "late": late,
        "generator_lag_p99_ms": round(1000 * pct(soak_lags, 0.99), 2),
        "generator_lag_max_ms": round(1000 * max(soak_lags, default=0.0), 2),
        "window_s": window,
        "windows": windows,
        "soak_start": soak_start,
        "end": finished,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--peak-seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=30)
    parser.add_argument("--rate", type=float, default=0, help="default: half the peak")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--window", type=float, default=0, help="default: min(60, seconds/3)")
    args = parser.parse_args()
    emit(**asyncio.run(run(args)))


if __name__ == "__main__":
    main()
