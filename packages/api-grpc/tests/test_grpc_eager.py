"""start_eagerly behaves like a task, minus the task when nothing waits."""

from __future__ import annotations

import asyncio
import sys

import pytest
from policy_grpc._eager import start_eagerly


async def test_a_coroutine_that_never_waits_needs_no_task() -> None:
    async def quick() -> int:
        return 42

    done, value = start_eagerly(quick(), asyncio.get_running_loop())
    if sys.version_info >= (3, 12):
        assert (done, value) == (True, 42)
    else:  # 3.11 has no eager start: always a task (see _eager's docstring)
        assert done is False
        assert isinstance(value, asyncio.Task)
        assert await value == 42


async def test_a_coroutine_that_waits_finishes_in_a_task() -> None:
    gate = asyncio.Event()

    async def slow() -> str:
        await asyncio.sleep(0)
        await gate.wait()
        return "late"

    done, task = start_eagerly(slow(), asyncio.get_running_loop())
    assert done is False
    assert isinstance(task, asyncio.Future)
    gate.set()
    assert await task == "late"


async def test_errors_reach_the_awaiting_coroutine_and_the_caller() -> None:
    loop = asyncio.get_running_loop()
    failing: asyncio.Future[int] = loop.create_future()

    async def handled() -> str:
        try:
            await failing
        except KeyError:
            return "handled"
        return "not reached"

    async def raising() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    _, first = start_eagerly(handled(), loop)
    _, second = start_eagerly(raising(), loop)
    failing.set_exception(KeyError("x"))
    assert await first == "handled"  # type: ignore[misc]
    with pytest.raises(ValueError, match="boom"):
        await second  # type: ignore[misc]


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    seen: list[str] = []
    gate = asyncio.Event()

    async def waiting() -> None:
        try:
            await gate.wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            seen.append("cleaned up")

    _, task = start_eagerly(waiting(), asyncio.get_running_loop())
    assert isinstance(task, asyncio.Task)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled", "cleaned up"]
    assert task.cancelled()


async def test_the_coroutine_runs_as_its_own_task_from_the_start() -> None:
    caller = asyncio.current_task()
    seen: list[asyncio.Task[object] | None] = []
    gate = asyncio.Event()

    async def bounded() -> str:
        seen.append(asyncio.current_task())
        try:
            async with asyncio.timeout(0):  # expires at once: cancels this task, not the caller
                await gate.wait()
        except TimeoutError:
            return "timed out"
        return "not reached"

    done, task = start_eagerly(bounded(), asyncio.get_running_loop())
    assert done is False
    assert isinstance(task, asyncio.Task)
    assert await task == "timed out"
    assert seen == [task]
    assert seen[0] is not caller
    # Regression (make reliability, 3.11): the timeout used to bind to the caller
    # (the stream's reading task) and cancel it, which ended the gRPC stream.
    assert caller is not None
    assert caller.cancelling() == 0
    await asyncio.sleep(0)  # a stray cancellation of the caller would land here
