"""Rate limits per principal and route class, with the `limits` library.

Counters live in memory (per process) unless a Redis URL is given; then the
API opens its own connection pool at startup and closes it at shutdown (one
pool per worker process, nothing opened at import time).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import msgspec
from limits import RateLimitItem, parse_many
from limits.aio import storage as aio_storage, strategies as aio_strategies

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "ROUTE_CLASSES",
    "RateDecision",
    "RateLimits",
    "parse_rate_limits",
]

ROUTE_CLASSES = ("evaluate", "usage", "read", "admin")
# Defaults: a guard rail against a runaway client on the admin plane, not a quota.
# Evaluation is not limited unless configured (the gateway in front sizes it; an
# unreachable limit would still cost every decision a counter update).
DEFAULT_RATE_LIMITS = "usage=20000/second;read=2000/second;admin=200/second"


def parse_rate_limits(text: str | None) -> dict[str, list[RateLimitItem]]:
    """`"evaluate=5000/second;admin=20/second"` -> limits per route class.

    Several limits for one class are separated by commas (`read=100/second,5000/hour`).
    Raises ValueError naming the bad part.
    """
    spec = DEFAULT_RATE_LIMITS if text is None else text
    out: dict[str, list[RateLimitItem]] = {}
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in ROUTE_CLASSES:
            raise ValueError(
                f"rate limit {part!r}: expected CLASS=N/PERIOD with CLASS one of "
                f"{', '.join(ROUTE_CLASSES)}"
            )
        try:
            out[name] = parse_many(value.replace(",", ";"))
        except ValueError as exc:
            raise ValueError(
                f"rate limit {part!r}: {value.strip()!r} is not like 5000/second"
            ) from exc
    return out


class RateDecision(msgspec.Struct, frozen=True):
    """The outcome of one hit: the headers to send, and whether it was refused."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        """`RateLimit-*` (IETF draft) and, on refusal, `Retry-After`."""
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(self.reset_seconds, 1))
        return out


# Memory counters use the asyncio storage too: the synchronous one starts a
# threading.Timer for expiry every 10 ms under load, and each start blocks the
# event loop while the new thread gets scheduled (milliseconds on a busy machine).
_ASYNC: Mapping[str, type[aio_strategies.RateLimiter]] = {
    "fixed-window": aio_strategies.FixedWindowRateLimiter,
    "moving-window": aio_strategies.MovingWindowRateLimiter,
    "sliding-window": aio_strategies.SlidingWindowCounterRateLimiter,
}


class RateLimits:
    """Limits per route class; `hit` counts one request of a principal."""

    def __init__(
        self, spec: str | None, *, redis_url: str | None = None, strategy: str = "fixed-window"
    ) -> None:
        self._items = parse_rate_limits(spec)
        self._redis_url = redis_url
        self._strategy = strategy
        self._pool: Any = None
        self._memory: aio_storage.MemoryStorage | None = None
        self._redis: aio_storage.RedisStorage | None = None
        self._limiter: aio_strategies.RateLimiter | None = None

    @property
    def configured(self) -> bool:
        return bool(self._items)

    async def start(self) -> None:
        """Open the storage (and, for Redis, the connection pool this object owns)."""
        if not self._items:
            return
        if self._redis_url:
            from redis.asyncio import BlockingConnectionPool  # only when configured

            self._pool = BlockingConnectionPool.from_url(self._redis_url, max_connections=32)
            self._redis = aio_storage.RedisStorage(
                "async+" + self._redis_url, implementation="redispy", connection_pool=self._pool
            )
            self._limiter = _ASYNC[self._strategy](self._redis)
        else:
            self._memory = aio_storage.MemoryStorage()
            self._limiter = _ASYNC[self._strategy](self._memory)

    async def close(self) -> None:
        """Release the pool (Redis) or the expiry timer (memory)."""
        memory, self._memory, self._limiter, self._redis = self._memory, None, None, None
        if memory is not None and memory.timer is not None:
            memory.timer.cancel()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.aclose()

    async def ping(self) -> bool:
        """True when the storage answers (always without limits or in memory)."""
        if self._redis is not None:
            return bool(await self._redis.check())
        return True

    async def hit(self, route_class: str, principal: str) -> RateDecision | None:
        """Count one request; None when allowed (or not limited), the refusal otherwise.

        Window stats are read only on refusal: an allowed request costs one
        storage operation per configured limit, and carries no RateLimit-* headers.
        """
        items = self._items.get(route_class)
        limiter = self._limiter
        if not items or limiter is None:
            return None
        for item in items:
            if await limiter.hit(item, route_class, principal):
                continue
            stats = await limiter.get_window_stats(item, route_class, principal)
            reset = max(1, math.ceil(stats.reset_time - time.time()))
            return RateDecision(False, item.amount, stats.remaining, reset)
        return None
