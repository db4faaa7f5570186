"""Redis adapters: L2 decision cache, usage store, change feed, API rate limits.

Each adapter receives an already built `redis.asyncio.Redis` client (see
`open_client`) and closes it only when told it owns it. Redis errors leave
these adapters as `policy_core.errors.StoreUnavailable`.
"""

from policy_redis._close import close_client
from policy_redis.cache import RedisDecisionCache
from policy_redis.client import open_client
from policy_redis.feed import RELOAD, RedisChangeFeed
from policy_redis.ratelimit import RedisRateLimiter
from policy_redis.usage import RedisUsageStore

__all__ = [
    "RELOAD",
    "RedisChangeFeed",
    "RedisDecisionCache",
    "RedisRateLimiter",
    "RedisUsageStore",
    "close_client",
    "open_client",
]
