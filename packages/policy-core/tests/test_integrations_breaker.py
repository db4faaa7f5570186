"""The circuit breaker against a reference model, for any sequence of calls and clock steps."""

from __future__ import annotations

import itertools

from hypothesis import given, strategies as st
from policy_core.clock import ManualClock
from policy_core.integrations import CircuitBreaker

# An event: ("call", succeeds) or ("wait", seconds).
events = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.booleans()),
        st.tuples(st.just("wait"), st.sampled_from([0.5, 1.0, 3.0, 5.0, 10.0])),
    ),
    max_size=60,
)


class Model:
    """The breaker as the docs state it, written plainly."""

    def __init__(self, failures: int, cooldown: float) -> None:
        self.failures, self.cooldown = failures, cooldown
        self.state, self.streak, self.opened_at = "closed", 0, 0.0

    def allow(self, now: float) -> bool:
        if self.state == "open" and now - self.opened_at >= self.cooldown:
            self.state = "half_open"
        return self.state != "open"

    def result(self, ok: bool, now: float) -> None:
        if ok:
            self.state, self.streak = "closed", 0
            return
        self.streak += 1
        if self.state == "half_open" or self.streak >= self.failures:
            self.state, self.opened_at = "open", now


@given(events, st.integers(min_value=1, max_value=5), st.sampled_from([1.0, 5.0]))
def test_the_breaker_follows_the_model(
    steps: list[tuple[str, object]], failures: int, cooldown: float
) -> None:
    clock = ManualClock(0.0)
    changes: list[str] = []
    breaker = CircuitBreaker(
        failures=failures, cooldown=cooldown, clock=clock, on_change=changes.append
    )
    model = Model(failures, cooldown)
    for kind, value in steps:
        if kind == "wait":
            clock.advance(float(value))  # type: ignore[arg-type]
            continue
        allowed = breaker.allow()
        assert allowed == model.allow(clock.monotonic())
        if allowed:
            ok = bool(value)
            breaker.success() if ok else breaker.failure()
            model.result(ok, clock.monotonic())
        assert breaker.state == model.state
        assert breaker.consecutive_failures == model.streak
    # Every change was reported, and never twice in a row the same state.
    assert all(a != b for a, b in itertools.pairwise(changes))


def test_half_open_lets_exactly_one_probe_through() -> None:
    clock = ManualClock(0.0)
    breaker = CircuitBreaker(failures=1, cooldown=1.0, clock=clock)
    breaker.failure()
    clock.advance(1.0)
    assert [breaker.allow() for _ in range(3)] == [True, False, False]
    breaker.release()  # the probe was cancelled: the next call probes
    assert breaker.allow() is True
    breaker.success()
    assert breaker.state == "closed"
