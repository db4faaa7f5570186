"""PostgresChangeFeed: policy change notifications over LISTEN/NOTIFY.

Lets the processes of one deployment that share a database (several HTTP
workers of the single-node default, the CLI) follow each other's policy
writes without Redis. NOTIFY is delivered to listeners when the publishing
transaction commits, in commit order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import psycopg
from policy_core.feeds import ListeningFeed
from policy_core.ports import PolicyChange
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from policy_postgres._connect import connect_args
from policy_postgres.errors import UNAVAILABLE, translate_errors

__all__ = ["RELOAD", "PostgresChangeFeed"]

_log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder(PolicyChange)

#: Delivered after the listener reconnects: changes may have been missed, reload everything.
RELOAD = PolicyChange(policy_id="*", revision=0, kind="updated", origin="postgres-feed:reconnected")


class PostgresChangeFeed(ListeningFeed):
    """A ChangeFeed on one NOTIFY channel (give each deployment sharing a database its own).

    Publishing uses the pool; listening uses a connection of its own, made
    with the pool's settings and re-made after a failure (then subscribers
    get `RELOAD`, since notifications sent meanwhile are lost).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        channel: str = "llm_policy_changes",
        retry_interval: float = 1.0,
        owns_pool: bool = False,
    ) -> None:
        if not channel.replace("_", "").isalnum() or len(channel) > 63:
            raise ValueError(f"invalid channel name {channel!r}; use letters, digits and _")
        super().__init__(channel)
        self._pool, self._retry = pool, retry_interval
        self.owns_pool = owns_pool

    async def publish(self, change: PolicyChange) -> None:
        payload = msgspec.json.encode(change).decode()
        async with translate_errors("publish a policy change"), self._pool.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (self._channel, payload))

    async def close(self) -> None:
        await self._stop_listening()
        if self.owns_pool:
            await self._pool.close()

    async def _listen(self) -> None:
        first = True
        while True:
            try:
                conninfo, kwargs = await connect_args(self._pool)
                kwargs["autocommit"] = True
                async with await psycopg.AsyncConnection.connect(conninfo, **kwargs) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self._listening.set()
                    if not first:
                        self.reconnects += 1
                        await self._deliver(RELOAD)
                    first = False
                    async for notify in conn.notifies():
                        try:
                            change = _decoder.decode(notify.payload)
                        except msgspec.DecodeError:
                            _log.warning("ignoring a malformed change notification")
                            continue
                        await self._deliver(change)
            except UNAVAILABLE as exc:
                self._listening.clear()
                _log.warning("change feed: PostgreSQL unavailable (%s); retrying", exc)
                await asyncio.sleep(self._retry)
