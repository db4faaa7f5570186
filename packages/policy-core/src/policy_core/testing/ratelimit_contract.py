"""Contract suite of RateLimiter.

Provide a fixture `rate_limiter_for` returning a callable that builds a fresh
limiter (empty counters) from a `parse_rate_limits` spec. The windows used
here are a day long, so no test depends on how fast it runs.
"""

from __future__ import annotations

from collections.abc import Callable

from policy_core.ports import RateLimiter
from policy_core.ratelimits import parse_rate_limits

__all__ = ["RateLimiterContract", "RateLimiterFor"]

RateLimiterFor = Callable[[str], RateLimiter]


async def _outcomes(limiter: RateLimiter, route_class: str, identity: str, n: int) -> list[bool]:
    return [await limiter.hit(route_class, identity) is None for _ in range(n)]


class RateLimiterContract:
    """Admission up to the limit, per identity and class, and the refusal's fields."""

    async def test_admits_up_to_the_limit_then_refuses(
        self, rate_limiter_for: RateLimiterFor
    ) -> None:
        limiter = rate_limiter_for("evaluate=3/day")
        assert await _outcomes(limiter, "evaluate", "alice", 5) == [True, True, True, False, False]
        refusal = await limiter.hit("evaluate", "alice")
        assert refusal is not None
        assert refusal.allowed is False
        assert refusal.limit == 3
        assert refusal.remaining == 0
        assert 1 <= refusal.reset_seconds <= 86_400

    async def test_counts_per_identity_and_per_class(
        self, rate_limiter_for: RateLimiterFor
    ) -> None:
        limiter = rate_limiter_for("evaluate=2/day;read=1/day")
        assert await _outcomes(limiter, "evaluate", "alice", 3) == [True, True, False]
        assert await _outcomes(limiter, "evaluate", "bob", 2) == [True, True]
        assert await _outcomes(limiter, "read", "alice", 2) == [True, False]

    async def test_a_class_without_limits_is_never_refused(
        self, rate_limiter_for: RateLimiterFor
    ) -> None:
        limiter = rate_limiter_for("admin=1/day")
        assert await _outcomes(limiter, "evaluate", "alice", 5) == [True] * 5
        assert await limiter.ping()

    async def test_the_first_exceeded_limit_is_reported(
        self, rate_limiter_for: RateLimiterFor
    ) -> None:
        limiter = rate_limiter_for("usage=100/day,2/5 days")
        assert await _outcomes(limiter, "usage", "alice", 2) == [True, True]
        refusal = await limiter.hit("usage", "alice")
        assert refusal is not None
        assert refusal.limit == 2
        assert 1 <= refusal.reset_seconds <= 5 * 86_400

    async def test_the_spec_it_is_built_from_parses(self, rate_limiter_for: RateLimiterFor) -> None:
        assert parse_rate_limits("read=1 per day")["read"][0].seconds == 86_400
        limiter = rate_limiter_for("read=1 per day")
        assert await _outcomes(limiter, "read", "carol", 2) == [True, False]
