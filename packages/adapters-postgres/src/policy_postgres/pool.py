"""Building the connection pool the adapters receive (done by the composition root)."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from policy_postgres.errors import translate_errors

__all__ = ["open_pool"]


async def open_pool(
    url: str,
    *,
    schema: str | None = None,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 10.0,
    name: str = "llm-policy",
    check: bool = True,
    parameters: dict[str, str] | None = None,
) -> AsyncConnectionPool[Any]:
    """An opened pool of autocommit connections (the adapters open transactions themselves).

    `schema`, when given, becomes the connections' search_path. Connections
    are checked before being handed out, so a restarted server is picked up.
    `check=False` skips that check (one round trip less per checkout, for the
    usage counters' hot path: a broken connection then fails one call and is
    replaced). `parameters` are server settings of every connection (e.g.
    `{"synchronous_commit": "off"}`). Raises StoreUnavailable when no connection can be made within `connect_timeout`.
    """
    kwargs: dict[str, Any] = {"autocommit": True}
    options = [f"-c {k}={v}" for k, v in (parameters or {}).items()]
    if schema is not None:
        options.append(f"-c search_path={schema}")
    if options:
        kwargs["options"] = " ".join(options)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url,
        kwargs=kwargs,
        min_size=min_size,
        max_size=max_size,
        timeout=connect_timeout,
        open=False,
        name=name,
        check=AsyncConnectionPool.check_connection if check else None,
    )
    async with translate_errors("open a connection pool"):
        try:
            await pool.open(wait=True, timeout=connect_timeout)
        except BaseException:
            await pool.close()
            raise
    return pool
