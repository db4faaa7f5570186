"""What the sinks cost the evaluation path: the audit outbox's `submit` and an evaluation with it.

    uv run --frozen python bench/bench_sinks.py [--calls N] [--rounds R]

In process, no network on the measured path: the Governance audit outbox
(policy_integrations.sinks) is started and delivers in the background to a
local Receiver on 127.0.0.1, as a server's would. Figures:

- `submit`: the p50 of one `outbox.submit(record)` (what GovernanceSink costs);
- `evaluate`: the p50 of one audited `EvaluationService.evaluate`, with the
  memory decision log, without and with the Governance sink (rounds
  interleaved; the added cost is the median over rounds of the p50 difference).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from policy_core.engine import PolicyEngine
from policy_core.integrations import CallGuard
from policy_core.language import load_policy_text
from policy_core.memory import MemoryDecisionLog
from policy_core.services import EngineHolder, EvaluationRequest, EvaluationService
from policy_core.testing import decision_record
from policy_integrations.receiver import Receiver
from policy_integrations.sinks import governance_audit_outbox

POLICY = """\
metadata: {id: bench}
config: {audit: all}
rules:
  - id: deny-sql
    condition: "llm.prompt.matches('(?i)drop table')"
    action: {decision: deny, reason: sql}
  - id: warn-big
    condition: "llm.max_tokens > 4000"
    action: {decision: warn, reason: big}
"""
CONTEXT = {
    "user": {"id": "u1"},
    "team": {"id": "t1"},
    "llm": {"provider": "openai", "model": "gpt-4o", "prompt": "hello", "max_tokens": 100},
}
_ns = time.perf_counter_ns


def p50(samples: list[int]) -> float:
    return statistics.median(samples) / 1000.0  # µs


async def timed_evaluations(service: EvaluationService, calls: int) -> list[int]:
    samples = []
    for i in range(calls):
        request = EvaluationRequest(context=CONTEXT, request_id=f"r{i}")
        start = _ns()
        await service.evaluate(request)
        samples.append(_ns() - start)
        if i % 500 == 0:
            await asyncio.sleep(0)  # let the outbox's tasks write and deliver
    return samples


async def main(calls: int, rounds: int) -> None:
    async with Receiver() as governance:
        with tempfile.TemporaryDirectory() as tmp:
            guard = CallGuard("governance", timeout=1.0, failures=1_000_000)
            outbox, delivery = governance_audit_outbox(governance.url, Path(tmp), guard)
            await outbox.start()
            # submit alone, in batches (the deque is drained between them)
            record = decision_record("r")
            submit: list[int] = []
            for _ in range(rounds):
                for _ in range(calls):
                    start = _ns()
                    outbox.submit(record)
                    submit.append(_ns() - start)
                await outbox.drain(120)
            holder = EngineHolder()
            holder.swap(PolicyEngine(load_policy_text(POLICY)))
            plain = EvaluationService(holder, log=MemoryDecisionLog(max_records=10_000))
            sunk = EvaluationService(
                holder, log=MemoryDecisionLog(max_records=10_000), governance=outbox
            )
            await timed_evaluations(plain, calls)  # warm up
            await timed_evaluations(sunk, calls)
            deltas, without, with_sink = [], [], []
            for _ in range(rounds):
                a = p50(await timed_evaluations(plain, calls))
                b = p50(await timed_evaluations(sunk, calls))
                await outbox.drain(120)
                without.append(a)
                with_sink.append(b)
                deltas.append(b - a)
            delivered = outbox.status().delivered
            await outbox.close()
            await delivery.close()
    print(f"outbox.submit            p50 {p50(submit):6.3f} µs  ({len(submit)} calls)")
    print(f"evaluate, log only       p50 {statistics.median(without):6.2f} µs")
    print(f"evaluate, log + audit    p50 {statistics.median(with_sink):6.2f} µs")
    print(
        f"added by the sink        p50 {statistics.median(deltas):+6.2f} µs (median of {rounds} rounds)"
    )
    print(f"delivered to the receiver: {delivered}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
