"""Shield that accepts connections but never answers: what each evaluation waits, before and after
the circuit breaker opens, and how it closes again once Shield answers.

    uv run --frozen python bench/bench_integrations.py [--timeout-ms 200] [--failures 5]
        [--cooldown 2] [--after 200]

Shield is a raw TCP server on 127.0.0.1 that reads requests and, while "stalled",
never writes a byte (connections stay open); once "answering" it sends a valid
`{safe, score, threats}` answer. The services are the memory deployment's, wired
by the composition root with LLM_POLICY_SHIELD_URL pointing there (the real
aiohttp client, guard, breaker), and every evaluation goes through
EvaluationService.evaluate, timed with perf_counter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time

from policy_cli.bootstrap import bootstrap
from policy_cli.testing import memory_settings
from policy_core.services import EvaluationRequest

POLICY = """\
metadata: {id: guard}
rules:
  - id: injection
    condition: "!shield.scan(llm.prompt).passed"
    action: {decision: deny, reason: prompt rejected}
---
metadata: {id: lenient}
config: {fail_open: true}
rules:
  - id: injection
    condition: "!shield.scan(llm.prompt).passed"
    action: {decision: warn, reason: scanner warning}
"""

ANSWER = json.dumps({"safe": True, "score": 0.01, "threats": []}).encode()


class StallingShield:
    """Accepts every connection; answers only when `answering` is set."""

    def __init__(self) -> None:
        self.answering = False
        self.connections = 0
        self.requests = 0
        self._server: asyncio.Server | None = None
        self.url = ""

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                self.requests += 1
                if not self.answering:
                    await reader.read()  # never answer: wait until the client gives up
                    return
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(ANSWER)}\r\n\r\n".encode()
                    + ANSWER
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"n={len(values)} p50={statistics.median(values) * 1000:.3f} ms "
        f"max={max(values) * 1000:.3f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout-ms", type=int, default=200)
    parser.add_argument("--failures", type=int, default=5)
    parser.add_argument("--cooldown", type=float, default=2.0)
    parser.add_argument("--after", type=int, default=200, help="evaluations with the breaker open")
    args = parser.parse_args()

    shield = StallingShield()
    await shield.start()
    settings = memory_settings(
        shield_url=shield.url,
        integration_timeout_ms=args.timeout_ms,
        integration_breaker_failures=args.failures,
        integration_breaker_cooldown_seconds=args.cooldown,
        shield_cache_seconds=0,
    )
    async with bootstrap(settings) as services:
        for text in POLICY.split("---\n"):
            await services.policies.create(text, author="bench")
        probe = services.integrations.probes["shield"]
        request = EvaluationRequest(context={"llm": {"prompt": "hello"}, "user": {"id": "u"}})

        async def timed() -> tuple[float, object]:
            start = time.perf_counter()
            result = await services.evaluation.evaluate(request)
            return time.perf_counter() - start, result.decision

        # 1. Shield stalls, breaker closed: each evaluation waits for the timeout.
        waiting: list[float] = []
        decisions: list[str] = []
        while probe.state().breaker == "closed":
            seconds, decision = await timed()
            waiting.append(seconds)
            decisions.append(f"{decision.decision}: {decision.errors[0].message}")  # type: ignore[attr-defined]
        opened_after = len(waiting)
        # 2. Breaker open: no wait at all.
        open_times: list[float] = []
        for _ in range(args.after):
            seconds, decision = await timed()
            open_times.append(seconds)
        open_decision = decision
        # 3. Shield answers again; after the cooldown the next evaluation probes and closes it.
        shield.answering = True
        await asyncio.sleep(args.cooldown)
        seconds_probe, probe_decision = await timed()
        closed_state = probe.state().breaker
        closed_times = [(await timed())[0] for _ in range(args.after)]
        requests_seen = shield.requests

    await shield.stop()
    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    print(
        f"timeout {args.timeout_ms} ms, breaker opens after {args.failures} failures, "
        f"cooldown {args.cooldown} s"
    )
    print(f"stalled, breaker closed : {_ms(waiting)} (opened after {opened_after} evaluations)")
    print(f"  first decision        : {decisions[0]}")
    print(f"breaker open            : {_ms(open_times)}")
    print(
        f"  decision              : {open_decision.decision}, "  # type: ignore[attr-defined]
        f"{open_decision.errors[0].message}"  # type: ignore[attr-defined]
    )
    print(
        f"probe once Shield answers: {seconds_probe * 1000:.3f} ms -> "
        f"{probe_decision.decision}, breaker {closed_state}"  # type: ignore[attr-defined]
    )
    print(f"breaker closed again    : {_ms(closed_times)}")
    print(f"requests Shield received: {requests_seen}")


if __name__ == "__main__":
    asyncio.run(main())
