"""A coroutine driven without a task (``runtime/drive.py``): results, errors, bare yields, cancel.

Pure asyncio, on the standard loop and (when installed) uvloop's: what a stream's
disconnect watcher and a suspended direct write rely on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from django_sse_exec.runtime.drive import Driven


def _loops() -> list[Any]:
    factories: list[Any] = [asyncio.new_event_loop]
    try:
        import uvloop

        factories.append(uvloop.new_event_loop)
    except ImportError:
        pass
    return factories


@pytest.fixture(params=_loops(), ids=lambda f: f.__module__.split(".")[0])
def run(request):
    def run(coro: Any) -> Any:
        loop = request.param()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()
    return run


def test_it_runs_a_coroutine_through_futures_and_bare_yields_to_its_result(run):
    async def main() -> list[Any]:
        gate = asyncio.get_running_loop().create_future()
        steps: list[str] = []
        done: list[Any] = []

        async def work() -> str:
            steps.append("start")
            await asyncio.sleep(0)  # a bare yield
            steps.append("after yield")
            value = await gate
            steps.append(f"got {value}")
            return "result"

        driven = Driven(work(), lambda result, exc: done.append((result, exc)))
        assert steps == ["start"] and not driven.done  # started at once, not by a task
        finished = driven.finished()
        await asyncio.sleep(0.01)
        assert steps == ["start", "after yield"] and not done
        gate.set_result(7)
        await finished
        return [steps, done, driven.done]

    steps, done, is_done = run(main())
    assert steps == ["start", "after yield", "got 7"]
    assert done == [("result", None)] and is_done


def test_an_exception_is_handed_over_and_cancel_runs_the_coroutines_finally(run):
    async def main() -> tuple[Any, list[str]]:
        failures: list[Any] = []

        async def fails() -> None:
            await asyncio.sleep(0)
            raise OSError("gone")

        Driven(fails(), lambda result, exc: failures.append(exc))
        await asyncio.sleep(0.01)
        cleaned: list[str] = []
        called: list[Any] = []

        async def waits() -> None:
            try:
                await asyncio.get_running_loop().create_future()
            finally:
                cleaned.append("finally")

        driven = Driven(waits(), lambda *args: called.append(args))
        driven.cancel()
        await driven.finished()  # done at once after a cancel
        return failures, cleaned + [str(called)]

    failures, cleaned = run(main())
    assert len(failures) == 1 and isinstance(failures[0], OSError)
    assert cleaned == ["finally", "[]"]  # closed, and no callback


def test_a_started_coroutine_is_resumed_from_what_it_yielded(run):
    async def main() -> list[Any]:
        gate = asyncio.get_running_loop().create_future()
        done: list[Any] = []

        async def send() -> str:
            await gate
            return "sent"

        coro = send()
        waiting = coro.send(None)  # as the fan-out starts a write itself
        Driven(coro, lambda result, exc: done.append(result), started=True, waiting=waiting)
        gate.set_result(None)
        await asyncio.sleep(0.01)
        return done

    assert run(main()) == ["sent"]


def test_a_cancel_after_its_future_completed_but_before_the_callback_ran_is_silent(run):
    """The future's done-callback is already queued when the stream ends and cancels:
    the callback must find the coroutine ended and do nothing (it used to resume the
    closed coroutine and log an error with two tracebacks per stream end)."""
    async def main() -> tuple[list[Any], list[Any], bool]:
        loop = asyncio.get_running_loop()
        errors: list[Any] = []
        loop.set_exception_handler(lambda _, context: errors.append(context))
        gate = loop.create_future()
        called: list[Any] = []

        async def waits() -> None:
            await gate

        driven = Driven(waits(), lambda *args: called.append(args))
        gate.set_result(None)  # queues the done-callback for the next turn
        driven.cancel()  # in the same turn, as a stream's cleanup does
        await asyncio.sleep(0.01)
        return errors, called, driven.done

    errors, called, done = run(main())
    assert errors == [] and called == [] and done
