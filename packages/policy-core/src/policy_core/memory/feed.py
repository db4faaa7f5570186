"""In-process change feed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from policy_core.ports import PolicyChange, Unsubscribe

__all__ = ["MemoryChangeFeed"]

_log = logging.getLogger(__name__)

Handler = Callable[[PolicyChange], Awaitable[None]]


class MemoryChangeFeed:
    """Delivers each change to every subscriber, in order, before `publish` returns."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self.published = 0

    async def publish(self, change: PolicyChange) -> None:
        self.published += 1
        for handler in list(self._handlers):
            try:
                await handler(change)
            except Exception:
                # One faulty subscriber must not keep the change from the others.
                _log.exception("change feed handler failed for %r", change.policy_id)

    async def subscribe(self, handler: Handler) -> Unsubscribe:
        self._handlers.append(handler)

        async def unsubscribe() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return unsubscribe
