"""RedisUsageStore: request counts and spend shared by every replica of a cluster."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

from policy_core.memory import period_start, window_seconds
from policy_core.ports import Clock, FactRequest
from redis.asyncio import Redis

from policy_redis._close import close_client
from policy_redis.errors import translate_errors

__all__ = ["RedisUsageStore"]

_FETCH_LUA = files("policy_redis").joinpath("usage_fetch.lua").read_text(encoding="utf-8")
# Spend counters outlive their period by a margin, then Redis drops them.
_SPEND_TTL = {"day": 2 * 86400, "month": 62 * 86400}
_STAMP = {"day": "%Y-%m-%d", "month": "%Y-%m"}


class RedisUsageStore:
    """A UsageStore on Redis: exact sliding windows and per-period spend.

    `rate_limit.count` keeps one sorted-set member per recorded request and
    key, trimmed to the longest window ever asked for that key; one Lua
    script records and counts every requested fact atomically, in one round
    trip, so concurrent replicas never lose or double a request. Spend is an
    INCRBYFLOAT counter per key and UTC day/month.

    With `clock=None` the windows use the Redis server's clock (one clock for
    every replica) and budget periods the local UTC date; tests pass a manual
    clock instead.
    """

    def __init__(
        self,
        client: Redis[bytes],
        *,
        prefix: str = "llm-policy:usage:",
        clock: Clock | None = None,
        owns_client: bool = False,
    ) -> None:
        self._client, self._prefix, self._clock = client, prefix, clock
        self._fetch = client.register_script(_FETCH_LUA)
        self.owns_client = owns_client

    async def fetch(
        self, requests: Sequence[FactRequest], *, record: bool = True
    ) -> dict[FactRequest, Any]:
        rates: dict[str, dict[int, list[FactRequest]]] = {}
        budgets: dict[str, list[FactRequest]] = {}
        now = self._now()
        for req in requests:
            try:
                if req[0] == "rate_limit.count":
                    ms = window_seconds(str(req[2])) * 1000
                    rates.setdefault(str(req[1]), {}).setdefault(ms, []).append(req)
                elif req[0] == "budget.spent":
                    name = self._spend_key(str(req[1]), str(req[2]), now)
                    budgets.setdefault(name, []).append(req)
            except (ValueError, IndexError):
                continue  # left out: the engine reports the missing fact as an error
        if not rates and not budgets:
            return {}
        keys: list[str] = []
        args: list[str | int] = [
            "" if self._clock is None else int(self._clock.time() * 1000),
            "1" if record else "0",
            uuid.uuid4().hex,
            len(rates),
        ]
        for key, windows in rates.items():
            keys += [f"{self._prefix}hits:{key}", f"{self._prefix}horizon:{key}"]
            args += [len(windows), *windows]
        keys += list(budgets)
        async with translate_errors("read usage counters"):
            values = await self._fetch(keys=keys, args=args)
        return _results(rates, budgets, values, extra=0 if record else 1)

    async def record_spend(self, key: str, usd: float, at: datetime | None = None) -> None:
        if usd < 0:
            raise ValueError(f"spend must be >= 0, got {usd!r}")
        when = at or self._now()
        async with (
            translate_errors("record spend"),
            self._client.pipeline(transaction=True) as pipe,
        ):
            for period, ttl in _SPEND_TTL.items():
                name = self._spend_key(key, period, when)
                pipe.incrbyfloat(name, float(usd))
                pipe.expire(name, ttl)
            await pipe.execute()

    async def close(self) -> None:
        """Close the client when this store owns it."""
        if self.owns_client:
            await close_client(self._client)

    def _now(self) -> datetime:
        return datetime.now(UTC) if self._clock is None else self._clock.now()

    def _spend_key(self, key: str, period: str, at: datetime) -> str:
        # The period and its date come first: fixed formats, so no key can mimic another's.
        stamp = period_start(period, at).strftime(_STAMP[period])
        return f"{self._prefix}spend:{period}:{stamp}:{key}"


def _results(
    rates: dict[str, dict[int, list[FactRequest]]],
    budgets: dict[str, list[FactRequest]],
    values: list[Any],
    *,
    extra: int,
) -> dict[FactRequest, Any]:
    """Map the script's flat answer back to the requests, in the order they were sent."""
    out: dict[FactRequest, Any] = {}
    it = iter(values)
    for windows in rates.values():
        for reqs in windows.values():
            count = int(next(it)) + extra  # a dry run still counts itself
            out.update(dict.fromkeys(reqs, count))
    for reqs in budgets.values():
        out.update(dict.fromkeys(reqs, float(next(it))))
    return out
