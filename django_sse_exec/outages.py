"""Refusal or outage: how a failed connect step is answered.

``EventSource`` retries a stream that ended after a 200, and never one that got
any other status. So only a real refusal (the policy said no) may be a 403; when
the authorisation policy or the event store fails because something it depends
on is down or slow (the database, Redis, the network, a timeout), the client
must come back by itself. Such a connect is answered with a 200 that ends at
once with a ``retry:`` hint and a comment naming what failed, and is logged as
an error.

Which exceptions count as an outage is decided here, once, for both entry
points (the view and the ASGI fast path share :func:`~django_sse_exec.streams.single.open_stream`).
Anything else a policy raises is a bug in the policy: it stays a 403, logged.

It is also the one place that tracks whether Redis is down, per process
(:class:`Tracker`, :data:`tracker`). A Redis outage used to be logged by every
part that met it, every time (the hub's maintenance, its receive loop, each
connect, channels_redis's receive task): thousands of lines a minute, none
saying what to do. Now each part hands the failure to :func:`report`: the
first of an outage logs ONE error naming the cause and the fix (where the app
looks for Redis, password hidden, and which setting says so), the rest are
counted silently, and the hub's maintenance, which probes Redis while it is
down, logs ONE line when it is back, with how long it was gone. Streams say the
same in short in their keepalive comment (:func:`keepalive`), and the metrics
count outages and their duration.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

from django.db import InterfaceError, OperationalError

from .exceptions import SSEExecError, StoreUnavailable
from .telemetry import metrics
from .wire import KEEPALIVE, rejoin_hint

logger = logging.getLogger("django_sse_exec")


class ServiceUnavailable(SSEExecError):
    """A connect step failed for a reason that is not a refusal; the client should retry.

    ``step`` says which step ("authorization", "event store") and ``cause`` what
    it depends on that failed ("database", "redis", "timeout", "network").
    """

    def __init__(self, step: str, cause: str) -> None:
        super().__init__(f"{step} unavailable: {cause}")
        self.step = step
        self.cause = cause


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import RedisError
    except ImportError:  # redis is an optional dependency
        return ()
    return (RedisError,)


def cause_of(exc: BaseException) -> str | None:
    """What kind of outage ``exc`` is ("database", "redis", "timeout", "network"), or None.

    None means ``exc`` is not an outage (a bug, a refusal): retrying would not help.
    A database error that is not about the connection (a missing table, bad SQL)
    is not an outage either.
    """
    if isinstance(exc, (OperationalError, InterfaceError)):
        return "database"
    if isinstance(exc, StoreUnavailable) or isinstance(exc, _redis_errors()):
        return "redis"
    # asyncio.TimeoutError is TimeoutError from Python 3.11 on, another class on 3.10.
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(exc, OSError):
        return "network"
    return None


def unavailable(step: str, exc: BaseException) -> ServiceUnavailable | None:
    """The :class:`ServiceUnavailable` for ``exc`` during ``step`` (logged), or None if not an outage.

    An outage of the event store (the app's Redis) is logged once per outage by
    :data:`tracker`, and its message carries the short fix; any other (what the
    authorization policy depends on, say) is logged here, each time.
    """
    cause = cause_of(exc)
    if cause is None:
        return None
    if step == "event store":
        outage = tracker.failed(exc, step)
        return ServiceUnavailable(step, f"{cause}; {outage.short()}")
    logger.error("%s unavailable (%s: %s): the client will retry", step, type(exc).__name__, exc,
                 exc_info=exc)
    return ServiceUnavailable(step, cause)


@dataclass
class Outage:
    """One Redis outage as this process saw it: since when, what failed first, how often."""

    #: Where the app looks for Redis (password hidden) and the setting that says so.
    where: str
    setting: str
    #: ``time.monotonic()`` when it was first noticed.
    since: float
    #: The part that noticed it first, and its error.
    source: str
    error: str
    #: Failures reported during it (the first included).
    failures: int = 1

    def short(self) -> str:
        """The cause and fix in a few words, for a stream's comment."""
        return f"Redis at {self.where} unreachable, check {self.setting}"

    def message(self) -> str:
        """The one error line of the outage: the cause, what happens meanwhile, the fix."""
        return (f"Redis at {self.where} is unreachable ({self.error}; noticed by {self.source}). "
                "Open streams stay open and catch up from the log when it is back; new "
                "connects are told to retry; sends raise StoreUnavailable. Fix: start Redis "
                f"or make it reachable at {self.where}, or point {self.setting} at one that is. "
                "Nothing more is logged about it until it recovers.")


#: Used until a Redis store says where it connects (:meth:`Tracker.locate`).
UNLOCATED = ("its configured address", "SSE_EXEC['REDIS_URL'] or CHANNEL_LAYERS")


class Tracker:
    """Whether Redis is down, for the whole process: one error per outage, one line at recovery.

    Thread-safe (sync senders and the server's loop may both report). The store
    says where Redis is when it is made (:meth:`locate`); the hub's maintenance
    probes Redis while an outage lasts and calls :meth:`recovered` when it answers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.location = UNLOCATED
        #: The outage going on, or None.
        self.current: Outage | None = None
        #: Outages this process saw end (tests and the status page read it).
        self.ended = 0
        self._comment = KEEPALIVE

    def locate(self, where: str, setting: str) -> None:
        """Name where the app connects to Redis (no password) and the setting that decides it."""
        self.location = (where, setting)

    def failed(self, exc: BaseException, source: str) -> Outage:
        """Record a failure ``source`` met; the first of an outage logs the error and the fix."""
        with self._lock:
            outage = self.current
            if outage is not None:
                outage.failures += 1
                return outage
            outage = self.current = Outage(*self.location, since=time.monotonic(), source=source,
                                           error=f"{type(exc).__name__}: {exc}")
            self._comment = f": keepalive; {outage.short()}\n\n".encode()
        metrics.outage_started()
        logger.error("%s", outage.message())
        return outage

    def recovered(self) -> float | None:
        """Redis answered again: end the outage (one info line); its seconds, or None if none."""
        with self._lock:
            outage, self.current = self.current, None
            if outage is None:
                return None
            self._comment = KEEPALIVE
            self.ended += 1
        took = time.monotonic() - outage.since
        metrics.outage_ended(took)
        logger.info("Redis at %s is reachable again after %.1fs of outage (%d failures "
                    "during it)", outage.where, took, outage.failures)
        return took

    def keepalive(self) -> bytes:
        """A stream's keepalive: ``: keepalive``, or, during an outage, one that says why."""
        return self._comment


#: The process's tracker.
tracker = Tracker()


def report(exc: BaseException, source: str) -> bool:
    """Hand a failure of ``source`` to :data:`tracker` if it is a Redis outage (True), so
    the caller does not log it; False: not an outage, the caller logs it as before."""
    if cause_of(exc) not in ("redis", "network", "timeout"):
        return False
    tracker.failed(exc, source)
    return True


T = TypeVar("T")


async def guard(step: str, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``; an outage it raises becomes :class:`ServiceUnavailable` (logged)."""
    try:
        return await awaitable
    except Exception as exc:
        outage = unavailable(step, exc)
        if outage is None:
            raise
        raise outage from exc


async def retry_body(error: ServiceUnavailable, retry_ms: int) -> AsyncIterator[bytes]:
    """The whole body of an outage's 200: come back after ``retry_ms``, and why."""
    yield rejoin_hint(retry_ms, str(error))


__all__ = ["Outage", "ServiceUnavailable", "Tracker", "cause_of", "guard", "report", "retry_body",
           "tracker", "unavailable"]
