"""Start a coroutine eagerly: run it now, make a task only if it has to wait.

The fast copy of `loop.create_task(coro)` for the stream pipeline
(`_evaluation.py`); `packages/api-grpc/tests/test_grpc_eager.py` pins it to a
task's results, errors and cancellation on every supported Python.

Most evaluations finish without ever suspending (L1 cache, compiled engine,
a queued log append). A task scheduled per request costs about 6 µs of loop
machinery, a fifth of a whole decision's budget. How it is skipped depends on
the Python:

- 3.12 and later: `asyncio.Task(..., eager_start=True)`, the standard library's
  eager start (what `asyncio.eager_task_factory` uses). The coroutine runs at
  once as its own task, so `asyncio.current_task()`, `asyncio.timeout` and
  context variables behave as in any task; a task that finished at once is
  never scheduled. (About 0.6 µs dearer than the hand-driven start below when
  nothing waits, less than half its cost when something does.)
- 3.11, which has no eager start: the coroutine is driven by hand to its
  first suspension, and only then handed to a task that goes on exactly as
  `asyncio.Task` would. Until that suspension it runs inside the caller's
  task (3.11's `asyncio.wait_for` makes its own task, so it is unaffected).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["start_eagerly"]

T = TypeVar("T")

if sys.version_info >= (3, 12):

    def start_eagerly(
        coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop
    ) -> tuple[bool, T | asyncio.Future[T]]:
        """(True, result) when `coro` completed at once, else (False, a task finishing it).

        An exception raised before the first suspension propagates to the caller.
        """
        task = asyncio.Task(coro, loop=loop, eager_start=True)
        if task.done():
            return True, task.result()
        return False, task

else:

    def start_eagerly(
        coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop
    ) -> tuple[bool, T | asyncio.Future[T]]:
        """(True, result) when `coro` completed at once, else (False, a task finishing it).

        An exception raised before the first suspension propagates to the caller.
        """
        try:
            waiting_on = coro.send(None)
        except StopIteration as stop:
            return True, stop.value
        return False, loop.create_task(_finish(coro, waiting_on))

    async def _finish(coro: Coroutine[Any, Any, T], waiting_on: Any) -> T:
        while True:
            error: BaseException | None = None
            try:
                if waiting_on is None:  # a bare yield: asyncio.sleep(0)
                    await asyncio.sleep(0)
                else:
                    # Like Task.__step: the coroutine awaits this future; its result (or
                    # exception) reaches the coroutine when resumed, via Future.__await__.
                    waiting_on._asyncio_future_blocking = False
                    await asyncio.wait((waiting_on,))
            except asyncio.CancelledError:
                # Like Task.cancel: cancel what the coroutine waits on (or throw into it),
                # so it sees CancelledError where it awaits and can clean up.
                if waiting_on is None or not waiting_on.cancel():
                    error = asyncio.CancelledError()
            step = _step(coro, error)
            if isinstance(step, _Done):
                return step.value  # type: ignore[no-any-return]
            waiting_on = step

    class _Done:
        __slots__ = ("value",)

        def __init__(self, value: Any) -> None:
            self.value = value

    def _step(coro: Coroutine[Any, Any, Any], error: BaseException | None) -> Any:
        try:
            return coro.throw(error) if error is not None else coro.send(None)
        except StopIteration as stop:
            return _Done(stop.value)
