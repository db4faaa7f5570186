"""Making a connection of one's own with the settings of a pool."""

from __future__ import annotations

import inspect
from typing import Any

from psycopg_pool import AsyncConnectionPool

__all__ = ["connect_args"]


async def connect_args(pool: AsyncConnectionPool[Any]) -> tuple[str, dict[str, Any]]:
    """The pool's conninfo and connection kwargs (either may be a function, sync or async)."""
    return await _resolve(pool.conninfo), dict(await _resolve(pool.kwargs) or {})


async def _resolve(value: Any) -> Any:
    if callable(value):
        value = value()
        if inspect.isawaitable(value):
            value = await value
    return value
