"""Feeds, and the URLs of streams that carry many executions.

A feed is a named list of executions — ``user:42``, ``team:7`` — that a page
follows over one connection: every event of its latest executions (those of its
last ``MULTI_STREAM_MAX`` entries), an ``execution-added`` event when one joins
and ``execution-removed`` when newer ones push it out (see
:mod:`django_sse_exec.streams.many.feeds`). An execution joins with
:func:`add_to_feed` (or ``feeds=[...]`` of :class:`~django_sse_exec.ExecutionReporter`
and the Celery ``start_execution``) and leaves ``CLOSED_TTL`` after it closes,
when its log expires.

A feed is itself a log in the event store, of ``execution-added`` entries,
published like an execution's events: it works across processes wherever the
store does (Redis), and within one process on the memory store. Its entries are
notices, not reports: a feed is never watched for stalls.
"""

from __future__ import annotations

import time

from ..store.base import NOTICE
from ..wire import encode_data, validate_execution_id
from ..wire.many import EXECUTION_ADDED, feed_log_id, validate_feed_name
from .delivery import aget_delivery, get_delivery


def _entry(feed: str, execution_id: str) -> str:
    validate_feed_name(feed)
    validate_execution_id(execution_id)
    return encode_data({"executionId": execution_id, "at": round(time.time(), 3)})


async def aadd_to_feed(feed: str, execution_id: str) -> int:
    """Add ``execution_id`` to ``feed``: its streams announce it and start carrying it.

    Call it when the execution starts (before its first event, so no stream of
    the feed misses one). Adding it again is harmless. Returns the entry's id in
    the feed's log. Raises ``ValueError``/``TypeError`` for a bad feed name or id.
    """
    data = _entry(feed, execution_id)
    return await (await aget_delivery()).send(feed_log_id(feed), EXECUTION_ADDED, data,
                                              kind=NOTICE)


def add_to_feed(feed: str, execution_id: str) -> int:
    """Sync twin of :func:`aadd_to_feed`, for Celery tasks and sync views."""
    data = _entry(feed, execution_id)
    return get_delivery().send_blocking(feed_log_id(feed), EXECUTION_ADDED, data, kind=NOTICE)


__all__ = ["aadd_to_feed", "add_to_feed"]
