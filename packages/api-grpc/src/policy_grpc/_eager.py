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
- 3.11, which has no eager start: a plain `loop.create_task(coro)`. It used to
  drive the coroutine by hand to its first suspension inside the caller's task,
  which is not safe: an `asyncio.timeout` entered before that suspension (the
  PostgreSQL usage counters' bound, an integration call's) binds to the caller,
  the stream's reading task, and on expiry cancelled that task instead of the
  evaluation. The stream then stopped reading and ended with OK while the
  client was still sending (grpclib's "Outgoing stream was not ended"), found
  by `make reliability` with PostgreSQL away. No task-less fast path on 3.11.
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
        """(False, a task running `coro`): 3.11 has no eager start (module docstring)."""
        return False, loop.create_task(coro)
