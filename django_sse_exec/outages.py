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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from django.db import InterfaceError, OperationalError

from .exceptions import SSEExecError, StoreUnavailable
from .wire import rejoin_hint

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
    """The :class:`ServiceUnavailable` for ``exc`` during ``step`` (logged), or None if not an outage."""
    cause = cause_of(exc)
    if cause is None:
        return None
    logger.error("%s unavailable (%s: %s): the client will retry", step, type(exc).__name__, exc,
                 exc_info=exc)
    return ServiceUnavailable(step, cause)


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


__all__ = ["ServiceUnavailable", "cause_of", "guard", "retry_body", "unavailable"]
