"""Clocks (the Clock port of ports.py): the real one and a manual one for tests.

A layer below the services, which default to SystemClock; policy_core.memory
offers both too, with the other in-memory implementations.
"""

from __future__ import annotations

import time as _time
from datetime import UTC, datetime, timedelta

__all__ = ["ManualClock", "SystemClock"]


class SystemClock:
    """Wall-clock time (UTC) and the process's monotonic clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return _time.time()

    def monotonic(self) -> float:
        return _time.monotonic()


class ManualClock:
    """A clock that only moves when told to; `monotonic` moves with it."""

    def __init__(self, start: datetime | float = 1_700_000_000.0) -> None:
        self._t = start.timestamp() if isinstance(start, datetime) else float(start)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._t, UTC)

    def time(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._t

    def advance(self, seconds: float | timedelta) -> None:
        """Move forward (a negative step is refused: time never goes back here)."""
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if step < 0:
            raise ValueError("a ManualClock only moves forward")
        self._t += step

    def set(self, when: datetime | float) -> None:
        """Jump to `when` (not earlier than now)."""
        target = when.timestamp() if isinstance(when, datetime) else float(when)
        self.advance(target - self._t)
