"""Contract suites of DecisionCache, UsageStore, ChangeFeed and ApiKeyStore.

Fixtures each subclass provides:
- DecisionCacheContract: `decision_cache` (empty) and `advance`, an async
  callable moving the cache's time forward by N seconds.
- UsageStoreContract: `usage_store` (empty) and `advance` likewise; the store's
  clock starts at 2026-03-14T12:00:00Z (`T0`).
- ChangeFeedContract: `change_feed`.
- ApiKeyStoreContract: `api_key_store` (empty).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from policy_core.model import Decision, Reservation
from policy_core.ports import (
    ApiKeyRecord,
    ApiKeyStore,
    ChangeFeed,
    DecisionCache,
    PolicyChange,
    UsageStore,
)
from policy_core.testing._support import T0, eventually, raises

__all__ = [
    "ApiKeyStoreContract",
    "ChangeFeedContract",
    "DecisionCacheContract",
    "UsageStoreContract",
]

Advance = Callable[[float], Awaitable[None]]


def _decision(reason: str) -> Decision:
    return Decision(decision="allow", allowed=True, reason=reason, policy_set="sha256:x")


class DecisionCacheContract:
    async def test_miss_set_hit(self, decision_cache: DecisionCache) -> None:
        assert await decision_cache.get("k") is None
        await decision_cache.set("k", _decision("one"), 60)
        assert await decision_cache.get("k") == _decision("one")

    async def test_set_replaces(self, decision_cache: DecisionCache) -> None:
        await decision_cache.set("k", _decision("one"), 60)
        await decision_cache.set("k", _decision("two"), 60)
        assert await decision_cache.get("k") == _decision("two")

    async def test_entries_expire(self, decision_cache: DecisionCache, advance: Advance) -> None:
        await decision_cache.set("short", _decision("s"), 1)
        await decision_cache.set("long", _decision("l"), 60)
        await advance(2)
        assert await decision_cache.get("short") is None
        assert await decision_cache.get("long") == _decision("l")

    async def test_clear(self, decision_cache: DecisionCache) -> None:
        await decision_cache.set("k", _decision("one"), 60)
        await decision_cache.clear()
        assert await decision_cache.get("k") is None


class UsageStoreContract:
    async def test_rate_count_includes_this_request(self, usage_store: UsageStore) -> None:
        req = ("rate_limit.count", "u1", "1m")
        assert (await usage_store.fetch([req]))[req] == 1
        assert (await usage_store.fetch([req]))[req] == 2

    async def test_counted_once_per_request(self, usage_store: UsageStore) -> None:
        minute, hour = ("rate_limit.count", "u1", "1m"), ("rate_limit.count", "u1", "1h")
        first = await usage_store.fetch([minute, hour, minute])
        assert first == {minute: 1, hour: 1}
        assert await usage_store.fetch([hour]) == {hour: 2}

    async def test_dry_run_does_not_count(self, usage_store: UsageStore) -> None:
        req = ("rate_limit.count", "u1", "1m")
        await usage_store.fetch([req])
        assert await usage_store.fetch([req], record=False) == {req: 2}
        assert await usage_store.fetch([req], record=False) == {req: 2}
        assert await usage_store.fetch([req]) == {req: 2}

    async def test_keys_are_independent(self, usage_store: UsageStore) -> None:
        a, b = ("rate_limit.count", "a", "1m"), ("rate_limit.count", "b", "1m")
        await usage_store.fetch([a])
        await usage_store.fetch([a])
        assert await usage_store.fetch([b]) == {b: 1}

    async def test_window_slides(self, usage_store: UsageStore, advance: Advance) -> None:
        second, minute = ("rate_limit.count", "u", "1s"), ("rate_limit.count", "u", "1m")
        await usage_store.fetch([second, minute])
        await advance(2)
        assert await usage_store.fetch([second, minute]) == {second: 1, minute: 2}
        await advance(61)
        assert await usage_store.fetch([minute]) == {minute: 1}

    async def test_budget_day_and_month(self, usage_store: UsageStore) -> None:
        day, month = ("budget.spent", "team:a", "day"), ("budget.spent", "team:a", "month")
        assert await usage_store.fetch([day, month]) == {day: 0.0, month: 0.0}
        await usage_store.record_spend("team:a", 1.25, T0)
        await usage_store.record_spend("team:a", 0.5, T0 - timedelta(days=2))  # same month
        await usage_store.record_spend("team:a", 7.0, T0 - timedelta(days=40))  # earlier month
        await usage_store.record_spend("team:b", 3.0, T0)
        got = await usage_store.fetch([day, month])
        assert got[day] == 1.25
        assert abs(got[month] - 1.75) < 1e-9

    async def test_negative_spend_rejected(self, usage_store: UsageStore) -> None:
        with raises(ValueError):
            await usage_store.record_spend("k", -1.0, T0)

    async def test_unknown_kinds_left_out(self, usage_store: UsageStore) -> None:
        assert await usage_store.fetch([("shield.scan", "text")]) == {}

    # --- reservations (spec 7.3) ---

    async def test_a_reservation_counts_in_budget_spent(self, usage_store: UsageStore) -> None:
        day, month = ("budget.spent", "u1", "day"), ("budget.spent", "u1", "month")
        await usage_store.record_spend("u1", 0.25, T0)
        first = await usage_store.fetch([day, month], reserve=_hold("r1", 1.5, "u1"))
        assert first == {day: 0.25, month: 0.25}  # the values before this reservation
        got = await usage_store.fetch([day, month])
        assert abs(got[day] - 1.75) < 1e-9
        assert abs(got[month] - 1.75) < 1e-9
        assert await usage_store.fetch([("budget.spent", "u2", "day")]) == {
            ("budget.spent", "u2", "day"): 0.0
        }

    async def test_a_reservation_holds_every_key(self, usage_store: UsageStore) -> None:
        user, team = ("budget.spent", "u1", "day"), ("budget.spent", "team:t", "month")
        await usage_store.fetch([user, team], reserve=_hold("r1", 2.0, "u1", "team:t"))
        assert await usage_store.fetch([user, team]) == {user: 2.0, team: 2.0}

    async def test_settling_replaces_the_reservation_by_the_cost(
        self, usage_store: UsageStore
    ) -> None:
        day = ("budget.spent", "u1", "day")
        await usage_store.fetch([day], reserve=_hold("r1", 1.0, "u1", "team:t"))
        assert await usage_store.settle("r1", 0.5) in (("u1", "team:t"), ("team:t", "u1"))
        assert await usage_store.fetch([day]) == {day: 0.5}
        team = ("budget.spent", "team:t", "month")
        assert await usage_store.fetch([team]) == {team: 0.5}
        assert await usage_store.settle("r1", 0.5) is None  # settled once only
        assert await usage_store.fetch([day]) == {day: 0.5}
        assert await usage_store.settle("never-reserved", 1.0) is None

    async def test_releasing_charges_nothing(self, usage_store: UsageStore) -> None:
        day = ("budget.spent", "u1", "day")
        await usage_store.fetch([day], reserve=_hold("r1", 1.0, "u1"))
        assert await usage_store.release("r1") is True
        assert await usage_store.fetch([day]) == {day: 0.0}
        assert await usage_store.release("r1") is False
        assert await usage_store.settle("r1", 1.0) is None

    async def test_a_dry_run_reserves_nothing(self, usage_store: UsageStore) -> None:
        day = ("budget.spent", "u1", "day")
        await usage_store.fetch([day], record=False, reserve=_hold("r1", 1.0, "u1"))
        assert await usage_store.fetch([day]) == {day: 0.0}
        assert await usage_store.settle("r1", 1.0) is None

    async def test_an_unsettled_reservation_expires(
        self, usage_store: UsageStore, advance: Advance
    ) -> None:
        day = ("budget.spent", "u1", "day")
        await usage_store.fetch([day], reserve=_hold("r1", 1.0, "u1", ttl=600))
        await advance(599)
        assert await usage_store.fetch([day]) == {day: 1.0}
        await advance(2)
        assert await usage_store.fetch([day]) == {day: 0.0}  # released by its TTL
        # A late settlement still records what was spent.
        assert await usage_store.settle("r1", 0.75) == ("u1",)
        assert await usage_store.fetch([day]) == {day: 0.75}

    async def test_concurrent_reservations_never_see_the_same_total(
        self, usage_store: UsageStore
    ) -> None:
        day = ("budget.spent", "cap", "day")
        seen = await asyncio.gather(
            *(usage_store.fetch([day], reserve=_hold(f"r{n}", 1.0, "cap")) for n in range(20))
        )
        assert sorted(v[day] for v in seen) == [float(n) for n in range(20)]

    async def test_concurrent_requests_are_each_counted_once(self, usage_store: UsageStore) -> None:
        req = ("rate_limit.count", "busy", "1m")
        seen = await asyncio.gather(*(usage_store.fetch([req]) for _ in range(20)))
        assert sorted(v[req] for v in seen) == list(range(1, 21))


class ChangeFeedContract:
    async def test_publish_reaches_every_subscriber(self, change_feed: ChangeFeed) -> None:
        got_a: list[PolicyChange] = []
        got_b: list[PolicyChange] = []

        async def on_a(change: PolicyChange) -> None:
            got_a.append(change)

        async def on_b(change: PolicyChange) -> None:
            got_b.append(change)

        await change_feed.subscribe(on_a)
        await change_feed.subscribe(on_b)
        changes = [PolicyChange(policy_id="p", revision=n, kind="updated") for n in (1, 2, 3)]
        for change in changes:
            await change_feed.publish(change)
        await eventually(lambda: len(got_a) == 3 and len(got_b) == 3)
        assert got_a == changes
        assert got_b == changes

    async def test_unsubscribe_and_faulty_handler(self, change_feed: ChangeFeed) -> None:
        got: list[PolicyChange] = []

        async def broken(change: PolicyChange) -> None:
            raise RuntimeError("boom")

        async def keep(change: PolicyChange) -> None:
            got.append(change)

        await change_feed.subscribe(broken)
        stop = await change_feed.subscribe(keep)
        await change_feed.publish(PolicyChange(policy_id="p", revision=1, kind="created"))
        await eventually(lambda: len(got) == 1)
        await stop()
        await change_feed.publish(PolicyChange(policy_id="p", revision=2, kind="updated"))
        await asyncio.sleep(0.05)
        assert len(got) == 1


def _key(key_id: str, prefix: str, minutes: int = 0) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=key_id,
        name=f"key {key_id}",
        prefix=prefix,
        key_hash="sha256:" + prefix * 8,
        roles=("evaluator",),
        created_at=T0 + timedelta(minutes=minutes),
    )


class ApiKeyStoreContract:
    async def test_create_lookup_list_revoke(self, api_key_store: ApiKeyStore) -> None:
        await api_key_store.create(_key("k1", "aaaa1111"))
        await api_key_store.create(_key("k2", "bbbb2222", minutes=1))
        assert await api_key_store.get_by_prefix("aaaa1111") == _key("k1", "aaaa1111")
        assert await api_key_store.get_by_prefix("zzzz") is None
        assert [k.id for k in await api_key_store.list()] == ["k1", "k2"]
        assert await api_key_store.revoke("k1", T0 + timedelta(hours=1)) is True
        assert await api_key_store.revoke("k1", T0 + timedelta(hours=2)) is True
        assert await api_key_store.revoke("nope", T0) is False
        assert [k.id for k in await api_key_store.list()] == ["k2"]
        revoked = await api_key_store.get_by_prefix("aaaa1111")
        assert revoked is not None
        assert revoked.revoked_at == T0 + timedelta(hours=1)
        assert [k.id for k in await api_key_store.list(include_revoked=True)] == ["k1", "k2"]

    async def test_duplicate_id_or_prefix_rejected(self, api_key_store: ApiKeyStore) -> None:
        await api_key_store.create(_key("k1", "aaaa1111"))
        with raises(ValueError):
            await api_key_store.create(_key("k1", "cccc3333"))
        with raises(ValueError):
            await api_key_store.create(_key("k9", "aaaa1111"))


def _hold(rid: str, amount: float, *keys: str, ttl: float = 600) -> Reservation:
    """A reservation made at T0 (the contract's clock start), open for `ttl` seconds."""
    return Reservation(id=rid, amount=amount, keys=keys, expires_at=T0 + timedelta(seconds=ttl))
