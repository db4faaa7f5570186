"""RedisRateLimiter: the APIs' rate limits counted in Redis, shared by every replica.

The counting is the `limits` library's (fixed window, moving window or
sliding-window counter, each one atomic in Redis), over the deployment's
client and under its key prefix: `<prefix>LIMITER/<class>/<identity>/...`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping

from limits import RateLimitItem
from limits.aio import storage, strategies
from limits.limits import GRANULARITIES
from policy_core.errors import StoreUnavailable
from policy_core.memory import RateStrategy
from policy_core.ports import RateDecision, RateLimit
from policy_core.ratelimits import RateLimits
from redis.asyncio import Redis

from policy_redis.errors import UNAVAILABLE, translate_errors

__all__ = ["RedisRateLimiter"]

_log = logging.getLogger(__name__)

_STRATEGIES: Mapping[str, type[strategies.RateLimiter]] = {
    "fixed-window": strategies.FixedWindowRateLimiter,
    "moving-window": strategies.MovingWindowRateLimiter,
    "sliding-window": strategies.SlidingWindowCounterRateLimiter,
}


def _item(limit: RateLimit) -> RateLimitItem:
    return GRANULARITIES[limit.granularity](limit.amount, limit.multiples)


class RedisRateLimiter:
    """A RateLimiter over `client` (which the caller owns), keys under `prefix`."""

    def __init__(
        self,
        client: Redis[bytes],
        limits: RateLimits,
        *,
        prefix: str,
        strategy: RateStrategy = "fixed-window",
    ) -> None:
        if not prefix.rstrip(":"):
            raise ValueError("the rate-limit prefix must not be empty")
        self._items = {name: tuple(_item(x) for x in items) for name, items in limits.items()}
        # The client's own connection pool; the uri is then only a scheme to `limits`.
        self._storage = storage.RedisStorage(
            "async+redis://",
            connection_pool=client.connection_pool,
            implementation="redispy",
            key_prefix=prefix.rstrip(":"),
        )
        self._limiter = _STRATEGIES[strategy](self._storage)

    async def hit(self, route_class: str, identity: str) -> RateDecision | None:
        items = self._items.get(route_class)
        if not items:
            return None
        try:
            async with translate_errors("count a request against the rate limits"):
                for item in items:
                    if await self._limiter.hit(item, route_class, identity):
                        continue
                    stats = await self._limiter.get_window_stats(item, route_class, identity)
                    reset = max(1, math.ceil(stats.reset_time - time.time()))
                    return RateDecision(False, item.amount, stats.remaining, reset)
        except StoreUnavailable:
            raise
        except Exception as exc:
            # The `limits` library's own errors (StorageError, ConcurrentUpdateError) and
            # whatever else its Redis exchange raises while Redis goes away: the request
            # could not be counted, which is the store being unavailable (503), never a
            # 500 (make reliability: one admin write in 47 answered 500, Redis stopped).
            _log.warning(
                "rate limiter: %s: %s; answering store unavailable", type(exc).__name__, exc
            )
            raise StoreUnavailable(
                f"the rate limits could not be counted in Redis: {type(exc).__name__}: {exc}"
            ) from exc
        return None

    async def ping(self) -> bool:
        try:
            return bool(await self._storage.check())
        except UNAVAILABLE:
            return False
