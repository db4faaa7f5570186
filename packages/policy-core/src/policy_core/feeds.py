"""What change feeds with a listener of their own share (the PostgreSQL and Redis ones).

A feed of this kind serves every subscriber from one listener task, started
by the first `subscribe`. The subclass writes `publish` and `_listen`: the
loop that connects, sets `_listening` once changes published from then on
will be seen, hands each change to `_deliver`, and after a reconnect
delivers a "reload everything" change, since changes sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from policy_core.ports import PolicyChange, Unsubscribe

__all__ = ["Handler", "ListeningFeed"]

_log = logging.getLogger(__name__)

Handler = Callable[[PolicyChange], Awaitable[None]]


class ListeningFeed:
    """Subscribers, the listener task and delivery; `publish` and `_listen` are the subclass's."""

    def __init__(self, channel: str) -> None:
        self._channel = channel
        self._handlers: list[Handler] = []
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.reconnects = 0

    async def publish(self, change: PolicyChange) -> None:
        raise NotImplementedError

    async def _listen(self) -> None:
        raise NotImplementedError

    async def subscribe(self, handler: Handler) -> Unsubscribe:
        """Add `handler`; returns once changes published from now on will reach it.

        When the listener cannot start (the backend is down), raises why and
        forgets the handler; a later `subscribe` tries again.
        """
        self._handlers.append(handler)
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name=f"listen-{self._channel}")
        waiter = asyncio.ensure_future(self._listening.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            task, self._task = self._task, None
            self._handlers.remove(handler)
            task.result()  # the listener ended before listening: raise why

        async def unsubscribe() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return unsubscribe

    async def _stop_listening(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _deliver(self, change: PolicyChange) -> None:
        """Hand `change` to every subscriber; one failing handler does not stop the others."""
        for handler in list(self._handlers):
            try:
                await handler(change)
            except Exception:
                _log.exception("change feed handler failed for %r", change.policy_id)
