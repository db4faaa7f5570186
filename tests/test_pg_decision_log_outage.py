"""The decision log under failure: 50,000 evaluations while PostgreSQL is stopped for part
of the run. The server is an embedded one started in a temp dir for this test, so the
shared server the other suites use is never stopped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from policy_core import PolicyEngine, load_policy_text
from policy_core.services import EngineHolder, EvaluationRequest, EvaluationService
from policy_postgres import EmbeddedPostgres, PostgresDecisionLog, migrate, open_pool
from policy_postgres.testing import embedded_data_dir

TOTAL = 50_000
POLICY = """\
metadata: {id: outage}
rules:
  - id: deny-odd
    condition: "request.n % 2 == 1"
    action: {decision: deny, reason: odd}
"""


async def test_fifty_thousand_evaluations_across_an_outage() -> None:
    with embedded_data_dir() as tmp_path:
        await _run(tmp_path)


async def _run(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "data")
    url = await asyncio.to_thread(server.start)
    try:
        pool = await open_pool(url, max_size=2, connect_timeout=5)
        try:
            async with pool.connection() as conn:
                await migrate(conn)
            log = PostgresDecisionLog(
                pool, spool_path=tmp_path / "spool" / "decisions", retry_interval=0.2
            )
            await log.start()
            service = EvaluationService(
                EngineHolder(PolicyEngine(load_policy_text(POLICY))), log=log
            )
            done = 0
            while_down: list[int] = []
            down = asyncio.Event()
            tick = asyncio.Event()

            async def evaluate_all() -> None:
                nonlocal done
                for n in range(TOTAL):
                    req = EvaluationRequest(context={"request": {"n": n}}, request_id=f"r{n}")
                    result = await service.evaluate(req)
                    assert result.decision.allowed is (n % 2 == 0)
                    done += 1
                    if down.is_set():
                        while_down.append(n)
                    if n % 100 == 0:
                        tick.set()
                        await asyncio.sleep(0)  # let the writer and the controller run
                tick.set()

            async def until(count: int) -> None:
                while done < count:
                    tick.clear()
                    await tick.wait()

            async def break_the_database() -> None:
                await until(5_000)
                # Like a crash: no shutdown checkpoint, connections cut.
                await asyncio.to_thread(server.stop, "immediate")
                down.set()
                await until(min(done + 20_000, TOTAL - 5_000))
                down.clear()
                await asyncio.to_thread(server.start)

            await asyncio.gather(evaluate_all(), break_the_database())
            async with asyncio.timeout(120):
                await log.drain()
            counters = log.counters()
            await log.close()
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*), count(DISTINCT request_id) FROM decision_log"
                )
                rows, distinct = await cur.fetchone() or (0, 0)
        finally:
            await pool.close()
    finally:
        await asyncio.to_thread(server.stop)

    assert (rows, distinct) == (TOTAL, TOTAL)
    # Evaluations went on while the database was down: none waited for it.
    assert len(while_down) >= 5_000
    assert counters.outages >= 1
    assert counters.spooled > 0
    assert counters.replayed == counters.spooled
    assert (counters.dropped, counters.rejected, counters.backpressure) == (0, 0, 0)
    assert counters.appended == TOTAL
    assert counters.spool_bytes == 0
