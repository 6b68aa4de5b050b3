"""Report one execution's progress in the orchestrator's event vocabulary, lifecycle included.

Hand-writing every ``task-start``/``task-complete`` payload and remembering to
close the stream is how executions end up "running" forever: a crash leaves no
final event. :class:`ExecutionReporter` emits ``execution-start`` on enter,
measures durations, keeps the results, and on exit *always* emits the summary
(``execution-complete``, ``status: "failed"`` when a task failed or the block
raised) and closes the stream, then lets the exception propagate.

Payloads are built in one place, :class:`~django_sse_exec.execution.state.ExecutionState`
(in :mod:`django_sse_exec.execution.state`, re-exported here; the event names are in
:mod:`django_sse_exec.execution.vocabulary`), which does no I/O: the reporter's async
methods send what it builds and the sync methods are thin wrappers over them.

Every event goes out with a key (:mod:`django_sse_exec.execution.keys`), so a
re-run of the same code repeats nothing on the page; and every send learns, in
the same round trip, whether someone asked to cancel the execution
(:mod:`django_sse_exec.execution.cancel`): the report then raises
:class:`~django_sse_exec.exceptions.ExecutionCancelled`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from ..api import aclose_sse_connections, asend_as
from ..exceptions import ExecutionCancelled, ExecutionClosed
from ..runtime.sync import run_sync
from ..sending.feeds import aadd_to_feed
from ..store import get_store
from ..wire.many import validate_feed_name
from .leases import Lease
from .reporter_steps import StepBlock
from .state import ExecutionState, Message

logger = logging.getLogger("django_sse_exec")


class ExecutionReporter:
    """Report one execution; use ``with`` (sync code) or ``async with`` (async code).

    Sync (a Celery task, a thread, a management command)::

        with ExecutionReporter("exec-42", total=2) as report:
            report.task_start("fetch", "Fetch the data")
            report.progress(50, 100, "half way")
            report.task_complete("fetch")
            report.task_start("load", "Load it")
            report.task_fail("load", "database is read-only")
        # -> execution-complete {status: "failed", successful: 1, failed: 1, ...}, stream closed

    Async: ``async with ExecutionReporter(...) as report: await report.atask_start(...)``.

    On exit the reporter fails the tasks still running, emits ``execution-complete``
    (``status: "failed"`` if a task failed or the block raised; the exception's
    text is the summary's ``error``), then closes the stream
    (:func:`~django_sse_exec.close_sse_connections`) unless ``close=False``.
    An exception from the block is always re-raised after the final event and
    the close; an error while sending those is logged, and raised only if the
    block itself succeeded. :meth:`cancel` emits ``execution-cancelled`` instead.

    With ``feeds=["user:42"]`` the execution joins those feeds as it starts, so
    every page following one (:func:`~django_sse_exec.feed_stream_url`) shows it.

    Inside the block the reporter holds a lease on the execution, renewed in the
    background (``lease=False`` opts out): if the process dies before the exit,
    a web process ends the execution with ``execution-complete`` ``status: "lost"``
    within about ``LEASE_TTL + LEASE_CHECK`` seconds (see :mod:`django_sse_exec.execution.leases`).

    Progress people can plan by: ``progress`` events carry ``percent``, and
    ``rate`` and ``eta`` once they mean something (see :mod:`.pace`); nested,
    weighted steps roll up into one ``percent`` (``with report.step("download",
    weight=3): ...``; declare them with ``plan={"download": 3, "parse": 1}``).

    Cancel: once someone asked to cancel (``cancel_url``, ``request_cancel``),
    the next report raises :class:`~django_sse_exec.exceptions.ExecutionCancelled`
    (``cancel_requested`` is then True); let it leave the block and the
    execution ends ``cancelled``. :meth:`check_cancel` asks without reporting.

    Each event is sent with a key (``keyed=False`` opts out): a re-run of the
    block (``attempt`` says which attempt it is) repeats nothing already shown.
    """

    def __init__(self, execution_id: str, total: int | None = None, *, close: bool = True,
                 lease: bool = True, feeds: Iterable[str] = (), attempt: int = 1,
                 keyed: bool = True, plan: dict[str, float] | None = None) -> None:
        self.state = ExecutionState(execution_id, total)
        if plan:
            self.state.plan(plan)
        #: The attempt of this run (1, 2, ... when a retry runs the block again).
        self.attempt = attempt
        #: Send each event with its key (see :mod:`django_sse_exec.execution.keys`).
        self.keyed = keyed
        #: True once a report learnt that someone asked to cancel the execution.
        self.cancel_requested = False
        self._finishing = False
        #: Feeds the execution joins when it starts (see :func:`~django_sse_exec.add_to_feed`).
        self.feeds = [validate_feed_name(feed) for feed in feeds]
        self.close_on_exit = close
        #: Hold a lease while inside ``with``/``async with`` (see :mod:`django_sse_exec.execution.leases`).
        self.use_lease = lease
        self.lease: Lease | None = None

    @property
    def execution_id(self) -> str:
        return self.state.execution_id

    async def _emit(self, message: Message) -> int:
        """Send ``message`` with its key; raise ExecutionCancelled (after sending) once a
        cancel was requested, unless the reporter is finishing."""
        event, data = message
        key = self.state.key_for(message) if self.keyed else None
        try:
            appended = await asend_as(self.execution_id, event, data, key=key)
        except ExecutionClosed as exc:
            if exc.cancel_requested:
                self._cancelled()
            raise
        if appended.cancel_requested:
            self._cancelled()
        return int(appended)

    def _cancelled(self) -> None:
        self.cancel_requested = True
        if not self._finishing:
            raise ExecutionCancelled(self.execution_id)

    async def acheck_cancel(self) -> None:
        """Raise ExecutionCancelled if someone asked to cancel (one read of the store): for
        long work between reports."""
        if await get_store().cancel_requested(self.execution_id):
            self._cancelled()

    def check_cancel(self) -> None:
        """Sync twin of :meth:`acheck_cancel`."""
        run_sync("check_cancel", self.acheck_cancel)

    def plan(self, steps: dict[str, float], *, task_id: str | None = None) -> None:
        """Declare the next steps and their weights (of the execution, or of ``task_id``)."""
        self.state.plan(steps, task_id=task_id)

    def step(self, name: str, weight: float | None = None, *,
             steps: dict[str, float] | None = None, task_id: str | None = None) -> StepBlock:
        """A step: ``with report.step("download", weight=3): ...`` (or ``async with``).

        Emits ``progress`` as it starts and ends (``step``, ``percent``); progress
        inside it counts for its share. ``weight`` is its share among its siblings
        (default: as planned, else 1); ``steps`` declares its own steps.
        """
        return StepBlock(self, name, weight, steps, task_id)

    # -- async API --------------------------------------------------------------

    async def astart(self) -> int:
        """Join the reporter's ``feeds``, then emit ``execution-start``; returns its event id."""
        for feed in self.feeds:
            await aadd_to_feed(feed, self.execution_id)
        return await self._emit(self.state.start())

    async def atask_start(self, task_id: str, title: str | None = None, **extra: Any) -> int:
        """Emit ``task-start`` for ``task_id`` (its duration is measured from now)."""
        return await self._emit(self.state.task_start(task_id, title, **extra))

    async def atask_complete(self, task_id: str, **extra: Any) -> int:
        """Emit ``task-complete``; ``extra`` fields (e.g. ``result=...``) join the payload."""
        return await self._emit(self.state.task_end(task_id, **extra))

    async def atask_fail(self, task_id: str, error: BaseException | str, **extra: Any) -> int:
        """Emit ``task-fail`` with ``error`` (an exception or a message)."""
        return await self._emit(self.state.task_end(task_id, error=error, **extra))

    async def aprogress(self, current: int | float, total: int | float | None = None,
                        message: str | None = None, *, task_id: str | None = None) -> int:
        """Emit ``progress`` (of the running task if exactly one runs, or ``task_id``)."""
        return await self._emit(self.state.progress(current, total, message, task_id=task_id))

    async def acancel(self, reason: str | None = None) -> int:
        """Emit ``execution-cancelled``; the exit then only closes the stream."""
        if self.state.finished:
            raise RuntimeError(f"execution {self.execution_id} has already been finished")
        self._finishing = True  # a cancel request must not stop the cancel itself
        return await self._emit(self.state.cancel(reason))

    async def afinish(self, error: BaseException | None = None) -> None:
        """Emit the closing events (unless cancelled) and close the stream; see the class doc."""
        await asyncio.shield(self._finish(error))

    async def _finish(self, error: BaseException | None) -> None:
        self._finishing = True
        problem: BaseException | None = None
        for message in self.state.finish(error):
            try:
                await self._emit(message)
            except Exception as exc:
                logger.exception("execution %s: could not send %s", self.execution_id, message[0])
                problem = problem or exc
        if self.close_on_exit:
            try:
                await aclose_sse_connections(self.execution_id)
            except Exception as exc:
                logger.exception("execution %s: could not close the stream", self.execution_id)
                problem = problem or exc
        if self.lease is not None:
            try:
                await self.lease.arelease()
            except Exception:
                logger.warning("execution %s: could not release its lease", self.execution_id,
                               exc_info=True)
        if problem is not None and error is None:
            raise problem

    async def __aenter__(self) -> "ExecutionReporter":
        if self.use_lease:
            self.lease = await Lease(self.execution_id).astart()
        try:
            await self.astart()
        except ExecutionCancelled as exc:  # cancelled before it started: end it now
            await self.afinish(exc)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.afinish(exc)

    # -- sync API: thin wrappers --------------------------------------------------

    def start(self) -> int:
        """Sync twin of :meth:`astart`."""
        return run_sync("start", self.astart)

    def task_start(self, task_id: str, title: str | None = None, **extra: Any) -> int:
        """Sync twin of :meth:`atask_start`."""
        return run_sync("task_start", lambda: self.atask_start(task_id, title, **extra))

    def task_complete(self, task_id: str, **extra: Any) -> int:
        """Sync twin of :meth:`atask_complete`."""
        return run_sync("task_complete", lambda: self.atask_complete(task_id, **extra))

    def task_fail(self, task_id: str, error: BaseException | str, **extra: Any) -> int:
        """Sync twin of :meth:`atask_fail`."""
        return run_sync("task_fail", lambda: self.atask_fail(task_id, error, **extra))

    def progress(self, current: int | float, total: int | float | None = None,
                 message: str | None = None, *, task_id: str | None = None) -> int:
        """Sync twin of :meth:`aprogress`."""
        return run_sync("progress", lambda: self.aprogress(current, total, message, task_id=task_id))

    def cancel(self, reason: str | None = None) -> int:
        """Sync twin of :meth:`acancel`."""
        return run_sync("cancel", self.acancel, reason)

    def finish(self, error: BaseException | None = None) -> None:
        """Sync twin of :meth:`afinish`."""
        run_sync("finish", self.afinish, error)

    def __enter__(self) -> "ExecutionReporter":
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self.use_lease:
                self.lease = Lease(self.execution_id).start()
            try:
                self.start()
            except ExecutionCancelled as exc:  # cancelled before it started: end it now
                self.finish(exc)
                raise
            return self
        raise RuntimeError("ExecutionReporter was entered with `with` inside a running "
                           "event loop; use `async with ExecutionReporter(...)` instead")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish(exc)


__all__ = ["ExecutionReporter", "ExecutionState", "Message"]
