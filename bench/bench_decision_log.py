"""Decision-log figures: append cost, what logging adds to an evaluation, write throughput.

    uv run --frozen python bench/bench_decision_log.py [--url URL] [--records N]

Needs PostgreSQL (LLM_POLICY_TEST_DATABASE_URL or the local `test` database) for the
write-throughput figure; it uses a schema of its own and drops it afterwards. The
services are the memory deployment's, wired by the composition root (`wire`) over
the log under test.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from policy_cli.bootstrap import Services, memory_adapters, wired
from policy_cli.testing import memory_settings
from policy_core.memory import MemoryDecisionLog, SystemClock
from policy_core.ports import DecisionLog, DecisionLogCounters
from policy_core.services import ChainWriter, EvaluationRequest
from policy_core.testing import decision_record
from policy_postgres import PostgresDecisionLog
from policy_postgres.testing import database_url, isolated_pool

POLICY = """\
metadata: {id: bench}
rules:
  - id: deny-sql
    condition: "llm.prompt.matches('(?i)drop table')"
    action: {decision: deny, reason: sql}
  - id: warn-big
    condition: "llm.max_tokens > 4000"
    action: {decision: warn, reason: big}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class NullLog:
    """A log that drops everything: the baseline without logging."""

    def append(self, record: object) -> None:
        return None

    async def flush(self) -> None:
        return None

    def counters(self) -> DecisionLogCounters:
        return DecisionLogCounters(queued=0, spool_bytes=0, appended=0, written=0, dropped=0)


@asynccontextmanager
async def services_with(log: DecisionLog) -> AsyncIterator[Services]:
    """The memory deployment's services (`wire`, as every deployment) over `log`, with POLICY."""
    settings = memory_settings()
    adapters = dataclasses.replace(memory_adapters(settings, SystemClock()), log=log)
    async with wired(settings, adapters) as services:
        await services.policies.create(POLICY, author="bench")
        yield services


def _requests(n: int, prefix: str) -> list[EvaluationRequest]:
    return [
        EvaluationRequest(
            context={"llm": {"prompt": f"hello {i}", "max_tokens": 100}, "user": {"id": "u"}},
            request_id=f"{prefix}{i}",
        )
        for i in range(n)
    ]


async def evaluation_overhead(n: int) -> dict[str, float]:
    """Per-evaluation latency of EvaluationService with and without a queued log."""
    requests = _requests(n, "r")
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with isolated_pool(database_url()) as (pool, _):
            pg_log = PostgresDecisionLog(pool, spool_path=Path(tmp) / "spool")
            await pg_log.start()
            async with (
                services_with(NullLog()) as none,
                services_with(MemoryDecisionLog(max_records=1000)) as memory,
                services_with(pg_log) as postgres,
            ):
                variants = {
                    "none": none.evaluation,
                    "memory": memory.evaluation,
                    "postgres": postgres.evaluation,
                }
                # Interleaved, so that machine noise and GC fall on every variant alike.
                samples: dict[str, list[float]] = {name: [] for name in variants}
                for i, req in enumerate(requests):
                    for name, service in variants.items():
                        t = time.perf_counter_ns()
                        await service.evaluate(req)
                        samples[name].append((time.perf_counter_ns() - t) / 1000)
                    if i % 200 == 0:
                        await asyncio.sleep(0)  # let the PostgreSQL writer run
            for name, values in samples.items():
                out[f"{name}_p50_us"] = statistics.median(values)
                out[f"{name}_p99_us"] = percentile(values, 0.99)
            await pg_log.close()
    return out


async def logging_step(n: int, *, journal: bool = True) -> dict[str, float]:
    """The logging step itself, timed around each call: what logging adds to one evaluation.

    Subtracting two latency distributions cannot resolve a p99 of a few microseconds
    on a busy machine; timing the step directly can.
    """
    samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with isolated_pool(database_url()) as (pool, _):
            log = PostgresDecisionLog(pool, spool_path=Path(tmp) / "spool", journal=journal)
            await log.start()
            async with services_with(log) as services:
                service, engine = services.evaluation, services.holder.current
                for i, request in enumerate(_requests(n, "s")):
                    selection = engine.select(request.policies, request.namespace)
                    decision = selection.evaluate(request.context)
                    t = time.perf_counter_ns()
                    service._record(selection, request, f"s{i}", decision, time.perf_counter())
                    samples.append((time.perf_counter_ns() - t) / 1000)
                    if i % 200 == 0:
                        await asyncio.sleep(0)  # let the PostgreSQL writer run
            await log.close()
    suffix = "" if journal else "_nojournal"
    return {
        f"log_step{suffix}_p50_us": statistics.median(samples),
        f"log_step{suffix}_p99_us": percentile(samples, 0.99),
    }


async def append_cost(n: int, *, journal: bool = True) -> dict[str, float]:
    """Cost of PostgresDecisionLog.append alone (the part on the request path).

    With `journal` (the default, as deployed) `append` writes the record to the
    local journal (policy_postgres.journal); without, it only queues it."""
    records = [decision_record(f"a{i}") for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        async with isolated_pool(database_url()) as (pool, _):
            log = PostgresDecisionLog(
                pool, spool_path=Path(tmp) / "spool", queue_size=n + 1, journal=journal
            )
            samples = []
            for r in records:  # the writer is not started: this measures the queue only
                t = time.perf_counter_ns()
                log.append(r)
                samples.append((time.perf_counter_ns() - t) / 1000)
            start = time.perf_counter()
            await log.start()
            await log.drain()
            elapsed = time.perf_counter() - start
            await log.close()
    suffix = "" if journal else "_nojournal"
    return {
        f"append{suffix}_p50_us": statistics.median(samples),
        f"append{suffix}_p99_us": percentile(samples, 0.99),
        f"append{suffix}_per_s": n / (sum(samples) / 1e6),
        f"write{suffix}_records_per_s": n / elapsed,
    }


async def loop_lag(rate: int, seconds: float, *, sliced: bool) -> dict[str, float]:
    """What the writer costs the event loop it shares with the requests (issue 16).

    Records of the reference contexts are appended at `rate` per second in 1 ms
    ticks while a heartbeat task measures how late each of its 1 ms sleeps wakes
    up: the writer's turns show as lag. `sliced=False` is the writer before
    slicing (a whole batch linked and encoded in one go), for the same-sitting
    comparison.
    """
    import json

    from policy_postgres import decision_log as module

    contexts = json.loads((Path(__file__).parent / "reference_contexts.json").read_text())
    contexts = [c.get("context", c) for c in contexts]
    saved = module._BUDGET, module._MAX_TURN
    if not sliced:
        module._BUDGET, module._MAX_TURN = (float("inf"), float("inf")), float("inf")
    lags: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with isolated_pool(database_url()) as (pool, _):
                log = PostgresDecisionLog(pool, spool_path=Path(tmp) / "spool")
                await log.start()
                stop = asyncio.Event()

                async def heartbeat() -> None:
                    while not stop.is_set():
                        t = time.perf_counter()
                        await asyncio.sleep(0.001)
                        lags.append((time.perf_counter() - t - 0.001) * 1000)

                beat = asyncio.create_task(heartbeat())
                per_tick, n = max(1, rate // 1000), 0
                start = time.perf_counter()
                while time.perf_counter() - start < seconds:
                    due = int((time.perf_counter() - start) * rate)
                    while n < due:
                        ctx = contexts[n % len(contexts)]
                        log.append(decision_record(f"l{n}", context=ctx))
                        n += 1
                    await asyncio.sleep(0.001 if per_tick else 0)
                behind = log.counters().queued
                stop.set()
                await beat
                await log.drain()
                await log.close()
    finally:
        module._BUDGET, module._MAX_TURN = saved
    name = "sliced" if sliced else "one_go"
    return {
        f"lag_{name}_p99_ms": percentile(lags, 0.99),
        f"lag_{name}_max_ms": max(lags),
        f"lag_{name}_queued_at_end": float(behind),
    }


def chain_cost(n: int) -> dict[str, float]:
    """Cost of linking one record into the hash chain (done by the writer, off the request path)."""
    chain = ChainWriter("bench")
    records = [decision_record(f"h{i}", context={"llm": {"prompt": "hi " * 20}}) for i in range(n)]
    samples = []
    for r in records:
        t = time.perf_counter_ns()
        chain.link(r)
        samples.append((time.perf_counter_ns() - t) / 1000)
    return {
        "chain_link_p50_us": statistics.median(samples),
        "chain_link_p99_us": percentile(samples, 0.99),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--evaluations", type=int, default=20_000)
    parser.add_argument("--lag-rate", type=int, default=5_000, help="appends/s, loop-lag figure")
    parser.add_argument("--lag-seconds", type=float, default=10)
    parser.add_argument("--only-lag", action="store_true", help="the loop-lag figures alone")
    args = parser.parse_args()
    lag = await loop_lag(args.lag_rate, args.lag_seconds, sliced=False)
    lag |= await loop_lag(args.lag_rate, args.lag_seconds, sliced=True)
    if args.only_lag:
        for key, value in lag.items():
            print(f"{key:>30}: {value:,.2f}")
        return
    # The journal's cost on the request path: the same figures without it, same sitting.
    figures = await append_cost(args.records, journal=False)
    figures |= await append_cost(args.records)
    figures |= await logging_step(args.evaluations, journal=False)
    figures |= chain_cost(args.evaluations)
    figures |= await logging_step(args.evaluations)
    figures |= await evaluation_overhead(args.evaluations)
    figures |= lag
    for key, value in figures.items():
        print(f"{key:>30}: {value:,.2f}")
    added_p50 = figures["postgres_p50_us"] - figures["none_p50_us"]
    added_p99 = figures["postgres_p99_us"] - figures["none_p99_us"]
    print(f"{'added_by_log_p50_us':>30}: {added_p50:,.2f}")
    print(f"{'added_by_log_p99_us':>30}: {added_p99:,.2f}")


if __name__ == "__main__":
    asyncio.run(main())
