"""L1 decision cache: in process, bounded LRU with a TTL per entry."""

from __future__ import annotations

from collections import OrderedDict

from policy_core.model import Decision
from policy_core.ports import Clock

__all__ = ["MemoryDecisionCache"]


class MemoryDecisionCache:
    """At most `max_entries` decisions; the least recently used goes first when full."""

    def __init__(self, clock: Clock, *, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._clock = clock
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, Decision]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    async def get(self, key: str) -> Decision | None:
        return self.get_nowait(key)

    def get_nowait(self, key: str) -> Decision | None:
        """`get` without a coroutine, for callers on the hot path."""
        item = self._entries.get(key)
        if item is None or item[0] <= self._clock.monotonic():
            if item is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return item[1]

    async def set(self, key: str, decision: Decision, ttl_seconds: int) -> None:
        if ttl_seconds <= 0:
            return
        self._entries[key] = (self._clock.monotonic() + ttl_seconds, decision)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
            self.evictions += 1

    async def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
