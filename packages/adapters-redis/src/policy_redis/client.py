"""Building the one Redis client a deployment's adapters share."""

from __future__ import annotations

from redis.asyncio import Redis

from policy_redis._close import close_client
from policy_redis.errors import translate_errors

__all__ = ["open_client"]


async def open_client(url: str, *, socket_timeout: float = 2.0) -> Redis[bytes]:
    """A client for `url` that answered PING; raises StoreUnavailable otherwise.

    The caller owns it (close it with `await client.aclose()`). `socket_timeout`
    bounds connecting and every command, so that a Redis that stops answering
    turns into StoreUnavailable instead of a request that hangs.
    """
    client = Redis.from_url(
        url, socket_connect_timeout=socket_timeout, socket_timeout=socket_timeout
    )
    try:
        async with translate_errors(f"connect to {_redacted(url)}"):
            await client.ping()
    except BaseException:
        await close_client(client)
        raise
    return client


def _redacted(url: str) -> str:
    # Never echo a password from the URL into an error message or a log.
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest
