"""PostgreSQL adapters: policy store, decision log, API keys, usage; migrations; embedded server."""

from policy_postgres.api_keys import PostgresApiKeyStore
from policy_postgres.decision_log import DecisionLogCounters, PostgresDecisionLog
from policy_postgres.embedded import DEFAULT_DATA_DIR, EmbeddedPostgres
from policy_postgres.feed import PostgresChangeFeed
from policy_postgres.migrations import (
    Migration,
    MigrationStatus,
    load_migrations,
    migrate,
    reset,
    rollback,
    status,
)
from policy_postgres.pool import open_pool
from policy_postgres.store import PostgresPolicyStore
from policy_postgres.usage import PostgresUsageStore

__all__ = [
    "DEFAULT_DATA_DIR",
    "DecisionLogCounters",
    "EmbeddedPostgres",
    "Migration",
    "MigrationStatus",
    "PostgresApiKeyStore",
    "PostgresChangeFeed",
    "PostgresDecisionLog",
    "PostgresPolicyStore",
    "PostgresUsageStore",
    "load_migrations",
    "migrate",
    "open_pool",
    "reset",
    "rollback",
    "status",
]
