"""PostgresChangeFeed: policy change notifications over LISTEN/NOTIFY.

Lets the processes of one deployment that share a database (several HTTP
workers of the single-node default, the CLI) follow each other's policy
writes without Redis. NOTIFY is delivered to listeners when the publishing
transaction commits, in commit order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import psycopg
from policy_core.ports import PolicyChange, Unsubscribe
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from policy_postgres._connect import connect_args
from policy_postgres.errors import UNAVAILABLE, translate_errors

__all__ = ["RELOAD", "PostgresChangeFeed"]

_log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder(PolicyChange)

Handler = Callable[[PolicyChange], Awaitable[None]]

#: Delivered after the listener reconnects: changes may have been missed, reload everything.
RELOAD = PolicyChange(policy_id="*", revision=0, kind="updated", origin="postgres-feed:reconnected")


class PostgresChangeFeed:
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
        self._pool, self._channel, self._retry = pool, channel, retry_interval
        self.owns_pool = owns_pool
        self._handlers: list[Handler] = []
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.reconnects = 0

    async def publish(self, change: PolicyChange) -> None:
        payload = msgspec.json.encode(change).decode()
        async with translate_errors("publish a policy change"), self._pool.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (self._channel, payload))

    async def subscribe(self, handler: Handler) -> Unsubscribe:
        self._handlers.append(handler)
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name=f"listen-{self._channel}")
        # Changes published after subscribe() returns must reach the handler.
        waiter = asyncio.ensure_future(self._listening.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            self._task.result()  # the listener died: raise why

        async def unsubscribe() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return unsubscribe

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
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

    async def _deliver(self, change: PolicyChange) -> None:
        for handler in list(self._handlers):
            try:
                await handler(change)
            except Exception:
                _log.exception("change feed handler failed for %r", change.policy_id)
