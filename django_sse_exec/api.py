"""The public helpers: async first, each with a thin synchronous twin.

These mirror the TypeScript API this app grew from (``sendSSEEvent``,
``registerSSEClient``, ``unregisterSSEClient``, ``getSSEClientCount``,
``closeSSEConnections``) but work across processes: events go through the event
log (which assigns ids and keeps history for replay) and then the channel layer
(which reaches every process that has a stream open).

Input is validated here, at the call site, before anything is stored or sent.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .conf import sse_settings
from .hub.running import get_hub
from .layer.access import get_layer
from .layer.names import group_name
from .runtime.sync import run_sync
from .sending.delivery import aget_delivery, get_delivery
from .store import get_store
from .store.base import EXECUTION_RESUMED, NOTICE, REPORT, Appended
from .telemetry import metrics, tracing
from .wire import encode_data, validate_event_name, validate_execution_id

logger = logging.getLogger("django_sse_exec")


#: Longest accepted ``key`` of a send, in characters.
MAX_KEY_CHARS = 200


def _validated(execution_id: str, event: str, data: Any, key: str | None = None) -> str:
    """Validate a send's arguments; return the data as JSON text."""
    validate_execution_id(execution_id)
    validate_event_name(event)
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS):
        raise ValueError(f"key must be a str of 1 to {MAX_KEY_CHARS} characters, not {key!r}")
    return encode_data(data, max_bytes=int(sse_settings.MAX_EVENT_BYTES))


def _resumed_data(execution_id: str) -> str:
    return encode_data({"executionId": execution_id, "at": int(time.time() * 1000)})


async def asend_as(execution_id: str, event: str, data: Any = None, *, key: str | None = None,
                   kind: str = REPORT) -> Appended:
    """:func:`asend_sse_event` with the store's append ``kind`` (the app's own notices:
    cancel requests, stalls; see :mod:`django_sse_exec.store.base`)."""
    text = _validated(execution_id, event, data, key)
    if tracing.ENABLED:  # (no span, no context manager, when OpenTelemetry is not installed)
        with tracing.sending(execution_id, event) as sent:
            appended = sent(await (await aget_delivery()).send(execution_id, event, text,
                                                               key=key, kind=kind))
    else:
        appended = await (await aget_delivery()).send(execution_id, event, text, key=key, kind=kind)
    metrics.event_sent()
    if appended.resumed:
        await (await aget_delivery()).send(execution_id, EXECUTION_RESUMED,
                                           _resumed_data(execution_id), kind=NOTICE)
    return appended


async def asend_sse_event(execution_id: str, event: str, data: Any = None, *,
                          key: str | None = None) -> int:
    """Send ``event`` with JSON-serialisable ``data`` to every stream of the execution.

    The event is appended to the execution's log first (it gets the next id:
    1, 2, 3 ...; late joiners and reconnecting clients replay it from there),
    then delivered to the execution's channel-layer group (how: see
    :mod:`django_sse_exec.sending.delivery`). Returns the event id.

    With ``key`` (a str of up to 200 characters) the event is sent at most once
    per key within the execution's lifetime: a send with a key the execution has
    already logged sends nothing and returns that event's id. Use it where a
    retry may run the same step again (a Celery or ``django.tasks`` retry). The
    last ``SEND_KEYS_MAX`` keys of each execution are remembered, until its log
    expires; the check and the append are one atomic step in the store.

    Raises ``ValueError``/``TypeError`` for a bad execution id, event name, key or
    data (nothing is sent), :class:`~django_sse_exec.exceptions.ExecutionClosed` if
    the execution was closed, and
    :class:`~django_sse_exec.exceptions.StoreUnavailable` if the store cannot be
    reached.
    """
    return await asend_as(execution_id, event, data, key=key)


async def aclose_sse_connections(execution_id: str) -> int:
    """End every stream of the execution after it has delivered all earlier events.

    Logs a final ``stream-closed`` event (data: ``executionId``, ``lastEventId``),
    marks the execution closed (kept for ``CLOSED_TTL`` so reloads replay it and
    reconnects get 204), and returns the id of that final event. Idempotent.
    """
    validate_execution_id(execution_id)
    return await (await aget_delivery()).close(execution_id)


async def aregister_sse_client(execution_id: str, channel_name: str) -> None:
    """Add any channels consumer's channel to the execution's group and count it.

    The consumer receives ``{"type": "sse_exec.event", "execution_id", "id",
    "t", "event", "data"}`` messages (handler ``sse_exec_event``; ``data`` is
    JSON text, ``t`` the send time in seconds since the epoch). It is counted by
    :func:`aget_sse_client_count` until unregistered (or, if its process dies,
    until its heartbeat expires).
    """
    validate_execution_id(execution_id)
    if not isinstance(channel_name, str) or not channel_name:
        raise ValueError("channel_name must be a non-empty str")
    await get_layer().group_add(group_name(execution_id), channel_name)
    await get_store().add_member(execution_id, channel_name)
    hub = get_hub()
    await hub.start()
    hub.track(execution_id, channel_name)


async def aunregister_sse_client(execution_id: str, channel_name: str) -> None:
    """Undo :func:`aregister_sse_client`; an execution left with no clients leaves no entry."""
    validate_execution_id(execution_id)
    get_hub().untrack(execution_id, channel_name)
    await get_layer().group_discard(group_name(execution_id), channel_name)
    await get_store().remove_member(execution_id, channel_name)


async def aget_sse_client_count(execution_id: str) -> int:
    """Open streams (and registered consumers) of the execution, across all processes."""
    validate_execution_id(execution_id)
    return await get_store().count_members(execution_id)


def send_as(execution_id: str, event: str, data: Any = None, *, key: str | None = None,
            kind: str = REPORT) -> Appended:
    """Sync twin of :func:`asend_as`."""
    text = _validated(execution_id, event, data, key)
    if tracing.ENABLED:
        with tracing.sending(execution_id, event) as sent:
            appended = sent(get_delivery().send_blocking(execution_id, event, text, key=key,
                                                         kind=kind))
    else:
        appended = get_delivery().send_blocking(execution_id, event, text, key=key, kind=kind)
    metrics.event_sent()
    if appended.resumed:
        get_delivery().send_blocking(execution_id, EXECUTION_RESUMED,
                                     _resumed_data(execution_id), kind=NOTICE)
    return appended


def send_sse_event(execution_id: str, event: str, data: Any = None, *,
                   key: str | None = None) -> int:
    """Sync twin of :func:`asend_sse_event`, for Celery tasks, sync views and shells.

    On Redis it skips the event loop: one Redis script, run from the calling
    thread, logs the event and delivers it to the channel layer (one round trip).
    """
    return send_as(execution_id, event, data, key=key)


def close_sse_connections(execution_id: str) -> int:
    """Sync twin of :func:`aclose_sse_connections`; returns after ``stream-closed`` is published."""
    validate_execution_id(execution_id)
    return get_delivery("close_sse_connections").close_blocking(execution_id)


def register_sse_client(execution_id: str, channel_name: str) -> None:
    """Sync twin of :func:`aregister_sse_client`."""
    run_sync("register_sse_client", aregister_sse_client, execution_id, channel_name)


def unregister_sse_client(execution_id: str, channel_name: str) -> None:
    """Sync twin of :func:`aunregister_sse_client`."""
    run_sync("unregister_sse_client", aunregister_sse_client, execution_id, channel_name)


def get_sse_client_count(execution_id: str) -> int:
    """Sync twin of :func:`aget_sse_client_count`."""
    return run_sync("get_sse_client_count", aget_sse_client_count, execution_id)
