"""The memory rate limiter's windows on a manual clock, and the rate-limit spec."""

from __future__ import annotations

import pytest
from policy_core.memory import ManualClock, MemoryRateLimiter
from policy_core.ports import RateLimit
from policy_core.ratelimits import DEFAULT_RATE_LIMITS, parse_rate_limits
from policy_core.testing import T0


async def admitted(limiter: MemoryRateLimiter, n: int, identity: str = "alice") -> list[bool]:
    return [await limiter.hit("evaluate", identity) is None for _ in range(n)]


def test_the_spec_parses_every_documented_form() -> None:
    limits = parse_rate_limits(
        "evaluate=5000/second;admin=20/second, 100/hour;read=10 per 5 minutes"
    )
    assert limits["evaluate"] == (RateLimit(5000, 1, "second"),)
    assert limits["admin"] == (RateLimit(20, 1, "second"), RateLimit(100, 1, "hour"))
    assert limits["read"][0].seconds == 300
    assert parse_rate_limits("") == {}
    assert parse_rate_limits(None) == parse_rate_limits(DEFAULT_RATE_LIMITS)
    assert "evaluate" not in parse_rate_limits(None)
    assert parse_rate_limits("usage=2/Days")["usage"][0] == RateLimit(2, 1, "day")


@pytest.mark.parametrize(
    ("spec", "named"),
    [("bogus=1/second", "bogus"), ("evaluate=lots", "lots"), ("evaluate", "evaluate"),
     ("read=0/second", "0/second"), ("read=1/0 seconds", "1/0 seconds")],
)  # fmt: skip
def test_spec_errors_name_the_bad_part(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_rate_limits(spec)


async def test_a_fixed_window_starts_at_the_first_request_and_resets_after_it() -> None:
    clock = ManualClock(T0)
    limiter = MemoryRateLimiter(parse_rate_limits("evaluate=2/minute"), clock=clock)
    clock.advance(10)
    assert await admitted(limiter, 3) == [True, True, False]
    clock.advance(40)
    refusal = await limiter.hit("evaluate", "alice")
    assert refusal is not None
    assert refusal.reset_seconds == 20
    clock.advance(20)
    assert await admitted(limiter, 3) == [True, True, False]


async def test_a_moving_window_frees_one_slot_per_expired_request() -> None:
    clock = ManualClock(T0)
    limiter = MemoryRateLimiter(
        parse_rate_limits("evaluate=2/minute"), strategy="moving-window", clock=clock
    )
    assert await admitted(limiter, 1) == [True]
    clock.advance(30)
    assert await admitted(limiter, 2) == [True, False]
    refusal = await limiter.hit("evaluate", "alice")
    assert refusal is not None
    assert refusal.reset_seconds == 30  # when the first request leaves the window
    clock.advance(30)
    assert await admitted(limiter, 2) == [True, False]


async def test_a_sliding_window_weighs_the_previous_window() -> None:
    clock = ManualClock(60 * 1000)  # at the start of an aligned minute
    limiter = MemoryRateLimiter(
        parse_rate_limits("evaluate=4/minute"), strategy="sliding-window", clock=clock
    )
    assert await admitted(limiter, 5) == [True, True, True, True, False]
    clock.advance(75)  # next minute, a quarter in: the previous 4 weigh 3
    assert await admitted(limiter, 2) == [True, False]
    clock.advance(30)  # three quarters in: they weigh 1, plus this window's 1
    assert await admitted(limiter, 3) == [True, True, False]


async def test_expired_entries_are_swept() -> None:
    clock = ManualClock(T0)
    limiter = MemoryRateLimiter(parse_rate_limits("evaluate=1/second"), clock=clock)
    for n in range(100):
        await limiter.hit("evaluate", f"user-{n}")
    clock.advance(2)
    for _ in range(5000):
        await limiter.hit("evaluate", "steady")
    assert len(limiter._fixed) == 1


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="strategy"):
        MemoryRateLimiter({}, strategy="leaky-bucket")  # type: ignore[arg-type]
