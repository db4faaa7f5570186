"""RedisDecisionCache: the shared L2 decision cache of a cluster."""

from __future__ import annotations

import logging

import msgspec
from policy_core.model import Decision
from redis.asyncio import Redis

from policy_redis._close import close_client
from policy_redis.errors import translate_errors

__all__ = ["RedisDecisionCache"]

_log = logging.getLogger(__name__)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Decision)
_SCAN_BATCH = 500


class RedisDecisionCache:
    """Decisions as msgpack values under `<prefix><key>`, expired by Redis itself.

    Every replica reads and writes the same entries; `clear` drops only the
    keys under this cache's prefix (give each deployment sharing a Redis its
    own prefix). A value that does not decode (written by another version)
    counts as a miss.
    """

    def __init__(
        self, client: Redis[bytes], *, prefix: str = "llm-policy:cache:", owns_client: bool = False
    ) -> None:
        if not prefix:
            raise ValueError("the cache prefix must not be empty: clear() would drop every key")
        self._client, self._prefix = client, prefix
        self.owns_client = owns_client

    async def get(self, key: str) -> Decision | None:
        async with translate_errors("read the decision cache"):
            raw = await self._client.get(self._prefix + key)
        if raw is None:
            return None
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:
            _log.warning("ignoring an undecodable cached decision under %r", key)
            return None

    async def set(self, key: str, decision: Decision, ttl_seconds: int) -> None:
        if ttl_seconds <= 0:
            return  # the port promises ttl > 0; nothing to keep otherwise
        async with translate_errors("write the decision cache"):
            await self._client.set(self._prefix + key, _encoder.encode(decision), ex=ttl_seconds)

    async def clear(self) -> None:
        pattern = _glob_escape(self._prefix) + "*"
        async with translate_errors("clear the decision cache"):
            batch: list[bytes] = []
            async for name in self._client.scan_iter(match=pattern, count=_SCAN_BATCH):
                batch.append(name)
                if len(batch) >= _SCAN_BATCH:
                    await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                await self._client.unlink(*batch)

    async def close(self) -> None:
        """Close the client when this cache owns it."""
        if self.owns_client:
            await close_client(self._client)


def _glob_escape(text: str) -> str:
    # SCAN MATCH is a glob: a prefix holding *, ?, [ or \ must match literally.
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
