"""Static proof (for mypy) that the adapters satisfy their ports; never executed."""

from __future__ import annotations

from typing import Any

from policy_core import ports
from psycopg_pool import AsyncConnectionPool

from policy_postgres.api_keys import PostgresApiKeyStore
from policy_postgres.decision_log import PostgresDecisionLog
from policy_postgres.feed import PostgresChangeFeed
from policy_postgres.store import PostgresPolicyStore
from policy_postgres.usage import PostgresUsageStore


def _check(pool: AsyncConnectionPool[Any]) -> None:  # pragma: no cover
    _store: ports.PolicyStore = PostgresPolicyStore(pool)
    _log: ports.DecisionLog = PostgresDecisionLog(pool, spool_path="spool")
    _keys: ports.ApiKeyStore = PostgresApiKeyStore(pool)
    _feed: ports.ChangeFeed = PostgresChangeFeed(pool)
    _usage: ports.UsageStore = PostgresUsageStore(pool)
