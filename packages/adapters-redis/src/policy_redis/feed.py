"""RedisChangeFeed: policy change notifications over Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from policy_core.feeds import ListeningFeed
from policy_core.ports import PolicyChange
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from policy_redis._close import close_client, close_pubsub
from policy_redis.errors import UNAVAILABLE, translate_errors

__all__ = ["RELOAD", "RedisChangeFeed"]

_log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(PolicyChange)

#: Delivered after the subscriber reconnects: changes may have been missed, reload everything.
RELOAD = PolicyChange(policy_id="*", revision=0, kind="updated", origin="redis-feed:reconnected")


class RedisChangeFeed(ListeningFeed):
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
        super().__init__(channel)
        self._client = client
        self._retry, self._poll = retry_interval, poll_interval
        self.owns_client = owns_client
        self._resubscribed = False

    async def publish(self, change: PolicyChange) -> None:
        async with translate_errors("publish a policy change"):
            await self._client.publish(self._channel, _encoder.encode(change))

    async def close(self) -> None:
        """Stop listening; close the client when this feed owns it."""
        await self._stop_listening()
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
