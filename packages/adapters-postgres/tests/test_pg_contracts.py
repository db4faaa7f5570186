"""The PostgreSQL adapters pass the same contract suites as the memory ones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from policy_core.memory import ManualClock
from policy_core.testing import (
    T0,
    ApiKeyStoreContract,
    ChangeFeedContract,
    DecisionLogContract,
    PolicyStoreContract,
    UsageStoreContract,
)
from policy_postgres import (
    PostgresApiKeyStore,
    PostgresChangeFeed,
    PostgresDecisionLog,
    PostgresPolicyStore,
    PostgresUsageStore,
)
from psycopg_pool import AsyncConnectionPool

Advance = Callable[[float], Awaitable[None]]


class TestPostgresPolicyStore(PolicyStoreContract):
    @pytest.fixture
    def policy_store(self, pg_pool: AsyncConnectionPool[Any]) -> PostgresPolicyStore:
        return PostgresPolicyStore(pg_pool)


class TestPostgresDecisionLog(DecisionLogContract):
    @pytest.fixture
    async def decision_log(
        self, pg_pool: AsyncConnectionPool[Any], tmp_path: Path
    ) -> AsyncIterator[PostgresDecisionLog]:
        log = PostgresDecisionLog(pg_pool, spool_path=tmp_path / "spool.jsonl")
        await log.start()
        yield log
        await log.close()
        counters = log.counters()
        assert (counters.dropped, counters.rejected, counters.spooled) == (0, 0, 0)


class TestPostgresApiKeyStore(ApiKeyStoreContract):
    @pytest.fixture
    def api_key_store(self, pg_pool: AsyncConnectionPool[Any]) -> PostgresApiKeyStore:
        return PostgresApiKeyStore(pg_pool)


class TestPostgresChangeFeed(ChangeFeedContract):
    @pytest.fixture
    async def change_feed(
        self, pg_pool: AsyncConnectionPool[Any]
    ) -> AsyncIterator[PostgresChangeFeed]:
        # A channel per test: NOTIFY is database-wide, tests run side by side.
        feed = PostgresChangeFeed(pg_pool, channel=f"test_{uuid.uuid4().hex}")
        yield feed
        await feed.close()


class TestPostgresUsageStore(UsageStoreContract):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(T0)

    @pytest.fixture
    def usage_store(
        self, pg_pool: AsyncConnectionPool[Any], clock: ManualClock
    ) -> PostgresUsageStore:
        return PostgresUsageStore(pg_pool, clock=clock)

    @pytest.fixture
    def advance(self, clock: ManualClock) -> Advance:
        async def step(seconds: float) -> None:
            clock.advance(seconds)

        return step
