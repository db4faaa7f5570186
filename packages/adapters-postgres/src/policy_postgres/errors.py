"""Translation of psycopg errors to the core's vocabulary, at the adapter boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import psycopg_pool
from policy_core.errors import StoreUnavailable

__all__ = ["UNAVAILABLE", "translate_errors"]

#: Driver errors that mean "the database cannot be reached right now".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    psycopg_pool.PoolClosed,
    OSError,
    TimeoutError,
)


@asynccontextmanager
async def translate_errors(what: str) -> AsyncIterator[None]:
    """Re-raise connection-level driver errors as StoreUnavailable naming `what`."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise StoreUnavailable(
            f"PostgreSQL is unavailable while trying to {what}: {type(exc).__name__}; "
            "check that the server is running and LLM_POLICY_DATABASE_URL points to it"
        ) from exc
