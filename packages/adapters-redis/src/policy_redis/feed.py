"""RedisChangeFeed: policy change notifications over Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from policy_core.ports import PolicyChange, Unsubscribe
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from policy_redis._close import close_client, close_pubsub
from policy_redis.errors import UNAVAILABLE, translate_errors

__all__ = ["RELOAD", "RedisChangeFeed"]

_log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(PolicyChange)

Handler = Callable[[PolicyChange], Awaitable[None]]

#: Delivered after the subscriber reconnects: changes may have been missed, reload everything.
RELOAD = PolicyChange(policy_id="*", revision=0, kind="updated", origin="redis-feed:reconnected")


class RedisChangeFeed:
    """A ChangeFeed on one pub/sub channel (give each deployment sharing a Redis its own).

    Publishing uses the client; one listener task per feed holds a pub/sub
    connection. Pub/sub keeps nothing for a disconnected subscriber, so after
    any reconnect (redis-py's own, or the listener's after an error) the
    subscribers get `RELOAD` once the subscription is confirmed again.
    """

    def __init__(
        self,
        client: Redis[bytes],
        *,
        channel: str = "llm-policy:changes",
        retry_interval: float = 1.0,
        poll_interval: float = 0.5,
        owns_client: bool = False,
    ) -> None:
        if not channel:
            raise ValueError("the change feed needs a channel name")
        self._client, self._channel = client, channel
        self._retry, self._poll = retry_interval, poll_interval
        self.owns_client = owns_client
        self._handlers: list[Handler] = []
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._resubscribed = False
        self.reconnects = 0

    async def publish(self, change: PolicyChange) -> None:
        async with translate_errors("publish a policy change"):
            await self._client.publish(self._channel, _encoder.encode(change))

    async def subscribe(self, handler: Handler) -> Unsubscribe:
        self._handlers.append(handler)
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name=f"listen-{self._channel}")
        # Changes published after subscribe() returns must reach the handler:
        # wait until Redis has confirmed the subscription.
        waiter = asyncio.ensure_future(self._listening.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            task, self._task = self._task, None  # the next subscribe() starts a new listener
            self._handlers.remove(handler)
            task.result()  # the first subscription failed: raise why (StoreUnavailable)

        async def unsubscribe() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return unsubscribe

    async def close(self) -> None:
        """Stop listening; close the client when this feed owns it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.owns_client:
            await close_client(self._client)

    async def _listen(self) -> None:
        first = True
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._subscribe(pubsub)
                self._listening.set()
                if not first:
                    self.reconnects += 1
                    await self._deliver(RELOAD)
                first = False
                await self._read(pubsub)
            except UNAVAILABLE as exc:
                if first:  # Redis is not there at all: the caller hears it now, not never
                    async with translate_errors("subscribe to policy changes"):
                        raise
                self._listening.clear()
                _log.warning("change feed: Redis unavailable (%s); retrying", exc)
                await asyncio.sleep(self._retry)
            finally:
                await self._release(pubsub)

    async def _subscribe(self, pubsub: PubSub) -> None:
        """Subscribe and wait for Redis to confirm it (so nothing published after is missed)."""
        await pubsub.subscribe(self._channel)
        async with asyncio.timeout(10):
            while (message := await pubsub.get_message(timeout=self._poll)) is None or (
                message["type"] != "subscribe"
            ):
                pass
        assert pubsub.connection is not None  # set by subscribe()
        # redis-py reconnects a dropped pub/sub connection by itself and
        # subscribes again; this callback tells us, so subscribers can reload.
        pubsub.connection.register_connect_callback(self._on_reconnect)

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=self._poll)
            if message is None:
                continue
            if message["type"] == "subscribe" and self._resubscribed:
                self._resubscribed = False
                self.reconnects += 1
                await self._deliver(RELOAD)
            elif message["type"] == "message":
                try:
                    change = _decoder.decode(message["data"])
                except msgspec.DecodeError:
                    _log.warning("ignoring a malformed change notification")
                    continue
                await self._deliver(change)

    async def _on_reconnect(self, connection: Any) -> None:
        self._resubscribed = True

    async def _release(self, pubsub: PubSub) -> None:
        if pubsub.connection is not None:
            pubsub.connection.deregister_connect_callback(self._on_reconnect)
        with contextlib.suppress(*UNAVAILABLE):
            await close_pubsub(pubsub)

    async def _deliver(self, change: PolicyChange) -> None:
        for handler in list(self._handlers):
            try:
                await handler(change)
            except Exception:
                _log.exception("change feed handler failed for %r", change.policy_id)
