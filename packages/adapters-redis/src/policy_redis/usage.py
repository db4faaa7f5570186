"""RedisUsageStore: request counts and spend shared by every replica of a cluster."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

from policy_core.memory import SETTLE_GRACE_SECONDS, period_start, window_seconds
from policy_core.ports import Clock, FactRequest, Reservation
from redis.asyncio import Redis

from policy_redis._close import close_client
from policy_redis.errors import translate_errors

__all__ = ["RedisUsageStore"]

_FETCH_LUA = files("policy_redis").joinpath("usage_fetch.lua").read_text(encoding="utf-8")
_SETTLE_LUA = files("policy_redis").joinpath("usage_settle.lua").read_text(encoding="utf-8")
# Spend counters outlive their period by a margin, then Redis drops them.
_SPEND_TTL = {"day": 2 * 86400, "month": 62 * 86400}
_STAMP = {"day": "%Y-%m-%d", "month": "%Y-%m"}


class RedisUsageStore:
    """A UsageStore on Redis: exact sliding windows and per-period spend.

    `rate_limit.count` keeps one sorted-set member per recorded request and
    key, trimmed to the longest window ever asked for that key; one Lua
    script records and counts every requested fact atomically, in one round
    trip, so concurrent replicas never lose or double a request. Spend is an
    INCRBYFLOAT counter per key and UTC day/month. A reservation (spec 7.3)
    is a member `id|amount` of its keys' reservation sets, scored by its
    expiry, and a hash remembering it (a day past its expiry) for
    settlement; the same script reads the budgets and adds it, so
    concurrent replicas never overshoot a cap.

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
        self._settle = client.register_script(_SETTLE_LUA)
        self.owns_client = owns_client

    async def fetch(
        self,
        requests: Sequence[FactRequest],
        *,
        record: bool = True,
        reserve: Reservation | None = None,
    ) -> dict[FactRequest, Any]:
        rates: dict[str, dict[int, list[FactRequest]]] = {}
        budgets: dict[str, tuple[str, list[FactRequest]]] = {}
        now = self._now()
        for req in requests:
            try:
                if req[0] == "rate_limit.count":
                    ms = window_seconds(str(req[2])) * 1000
                    rates.setdefault(str(req[1]), {}).setdefault(ms, []).append(req)
                elif req[0] == "budget.spent":
                    name = self._spend_key(str(req[1]), str(req[2]), now)
                    budgets.setdefault(name, (str(req[1]), []))[1].append(req)
            except (ValueError, IndexError):
                continue  # left out: the engine reports the missing fact as an error
        if not rates and not budgets:
            return {}
        keys: list[str] = []
        args: list[str | int | float] = [
            "" if self._clock is None else int(self._clock.time() * 1000),
            "1" if record else "0",
            uuid.uuid4().hex,
            len(rates),
        ]
        for key, windows in rates.items():
            keys += [f"{self._prefix}hits:{key}", f"{self._prefix}horizon:{key}"]
            args += [len(windows), *windows]
        for name, (key, _) in budgets.items():
            keys += [name, self._held_key(key)]
        args.append(len(budgets))
        if reserve is not None and record:
            held = list(dict.fromkeys(reserve.keys))
            keys += [self._reservation_key(reserve.id), *map(self._held_key, held)]
            args += [
                reserve.id,
                repr(float(reserve.amount)),
                int(reserve.expires_at.timestamp() * 1000),
                SETTLE_GRACE_SECONDS * 1000,
                json.dumps(held),
                len(held),
            ]
        else:
            args.append("")
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

    async def settle(self, reservation_id: str, usd: float) -> tuple[str, ...] | None:
        if usd < 0:
            raise ValueError(f"spend must be >= 0, got {usd!r}")
        return await self._finish(reservation_id, float(usd))

    async def release(self, reservation_id: str) -> bool:
        return await self._finish(reservation_id, None) is not None

    async def _finish(self, reservation_id: str, usd: float | None) -> tuple[str, ...] | None:
        """Settle (`usd`) or release (None) a reservation; its keys, or None when not found."""
        hash_key = self._reservation_key(reservation_id)
        async with translate_errors("settle a reservation"):
            raw = await self._client.hget(hash_key, "keys")
            if raw is None:
                return None
            held = tuple(str(k) for k in json.loads(raw))
            keys = [hash_key, *map(self._held_key, held)]
            when = self._now()
            if usd is not None:
                for key in held:
                    keys += [self._spend_key(key, "day", when), self._spend_key(key, "month", when)]
            done = await self._settle(
                keys=keys,
                args=["" if usd is None else repr(usd), len(held), *_SPEND_TTL.values()],
            )
        return held if int(done) == 1 else None

    async def close(self) -> None:
        """Close the client when this store owns it."""
        if self.owns_client:
            await close_client(self._client)

    def _now(self) -> datetime:
        return datetime.now(UTC) if self._clock is None else self._clock.now()

    def _held_key(self, key: str) -> str:
        return f"{self._prefix}held:{key}"

    def _reservation_key(self, reservation_id: str) -> str:
        return f"{self._prefix}reservation:{reservation_id}"

    def _spend_key(self, key: str, period: str, at: datetime) -> str:
        # The period and its date come first: fixed formats, so no key can mimic another's.
        stamp = period_start(period, at).strftime(_STAMP[period])
        return f"{self._prefix}spend:{period}:{stamp}:{key}"


def _results(
    rates: dict[str, dict[int, list[FactRequest]]],
    budgets: dict[str, tuple[str, list[FactRequest]]],
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
    for _, reqs in budgets.values():
        out.update(dict.fromkeys(reqs, float(next(it))))
    return out
