"""Translation of redis-py errors to the core's vocabulary, at the adapter boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from policy_core.errors import StoreUnavailable
from redis.exceptions import RedisError

__all__ = ["UNAVAILABLE", "translate_errors"]

#: What redis-py raises when Redis cannot serve a command right now. Every
#: RedisError is included: a redis exception must never reach an API, and the
#: callers of these adapters (the services) treat the store as down either way.
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


@asynccontextmanager
async def translate_errors(what: str) -> AsyncIterator[None]:
    """Re-raise driver errors as StoreUnavailable naming `what`."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise StoreUnavailable(
            f"Redis is unavailable while trying to {what}: {type(exc).__name__}: {exc}; "
            "check that the server is running and LLM_POLICY_REDIS_URL points to it"
        ) from exc
