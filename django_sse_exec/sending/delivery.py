"""How an event leaves this process: one place, chosen once per configuration.

Every send and close goes through the process's :class:`Delivery`, picked by
:func:`get_delivery` from the store and the channel layer:

=====================  ==========================================================
:class:`Delivery`      log in the store, then ``group_send`` (memory store, or any
                       layer that is not channels_redis). Sync callers run it on
                       the server's loop or the private loop (:mod:`~django_sse_exec.runtime.sync`).
:class:`LoggedThenPublished`  Redis store and a channels_redis layer whose messages
                       Redis cannot deliver itself: sync callers log with one
                       blocking round trip and hand the message to the ordered
                       background :mod:`.publisher`.
:class:`Fused`         Redis store and a channels_redis layer on the same Redis (or
                       pub/sub hosts sharded alike) that passed the probe, and no
                       ``REDIS_WAIT_REPLICAS``: the log's own script delivers the
                       event (one round trip, sync or async).
=====================  ==========================================================

Closing always logs ``stream-closed`` and then publishes it through the layer's
API (once per execution, so its cost does not matter); streams repair any
reordering from the log by id.

Every message carries ``t``, its send time (Redis's clock when Redis delivers
it): a hub uses it to notice that its channel is behind and catch up from the
log in bulk.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from ..exceptions import StoreUnavailable
from ..layer.access import get_layer
from ..layer.names import group_name
from ..layer.redis import fused, versions
from ..runtime.sync import refuse_in_loop, run_sync
from ..store import Store, get_store
from ..store.base import REPORT, Appended
from ..telemetry import tracing
from ..wire import STREAM_CLOSED
from .publisher import publisher

logger = logging.getLogger("django_sse_exec")

#: Message ``type`` of events on the channel layer. A consumer registered with
#: ``register_sse_client`` receives them in a method named ``sse_exec_event``.
MESSAGE_TYPE = "sse_exec.event"


def message(execution_id: str, event_id: int, event: str, data: str,
            sent_at: float | None = None) -> dict[str, Any]:
    """The channel-layer message of one logged event; with tracing on, it carries the
    sender's trace context as ``"tc"`` (:mod:`~django_sse_exec.telemetry.tracing`)."""
    sent = {"type": MESSAGE_TYPE, "execution_id": execution_id, "id": event_id,
            "t": time.time() if sent_at is None else sent_at, "event": event, "data": data}
    if tracing.ENABLED and (context := tracing.carrier()) is not None:
        sent["tc"] = context
    return sent


def _options(key: str | None, kind: str) -> dict[str, Any]:
    """The store's append options, given only when not the defaults (so a project's own
    Store that predates them keeps working for plain sends)."""
    options: dict[str, Any] = {}
    if key is not None:
        options["key"] = key
    if kind != REPORT:
        options["kind"] = kind
    return options


def _appended(result: int) -> Appended:
    return result if isinstance(result, Appended) else Appended(int(result))


def _fresh(appended: Appended) -> bool:
    """True when the append logged a new event (so it must be delivered)."""
    return appended > 0 and not appended.repeated


class Delivery:
    """Log, then publish through the layer's public API.

    ``key`` and ``kind`` go to :meth:`~django_sse_exec.store.base.Store.append`;
    an append that logged nothing (a repeated key, a stale stall notice) is not
    delivered.
    """

    name = "log then group_send"

    def __init__(self, store: Store, layer: Any) -> None:
        self.store = store
        self.layer = layer

    async def send(self, execution_id: str, event: str, data: str, *, key: str | None = None,
                   kind: str = REPORT) -> Appended:
        """Log ``event`` (validated JSON text ``data``), deliver it, return its id."""
        appended = _appended(await self.store.append(execution_id, event, data,
                                                     **_options(key, kind)))
        if _fresh(appended):
            # The plain id: an Appended in the message would be deep-copied (in-memory
            # layer) attribute by attribute, and is no id to any other reader.
            await self.publish(execution_id, int(appended), event, data)
        return appended

    async def close(self, execution_id: str) -> int:
        """Log ``stream-closed`` (once) and deliver it; return its id."""
        event_id, first = await self.store.close(execution_id)
        if first:
            closed = self.store.closed_event(execution_id, event_id)
            await self.publish(execution_id, event_id, STREAM_CLOSED, closed.data)
        return event_id

    async def publish(self, execution_id: str, event_id: int, event: str, data: str) -> None:
        """Publish a logged event; a failure is logged, not raised.

        The event is already in the log with its id, so raising would invite a
        retry that sends it twice. Streams get it anyway: each hub compares the
        log's last ids with what it received (every ``REPAIR_INTERVAL``) and
        catches up from the log.
        """
        try:
            await self.layer.group_send(group_name(execution_id),
                                        message(execution_id, event_id, event, data))
        except Exception:
            logger.warning("publishing event %s of execution %s failed; streams will catch "
                           "up from the log", event_id, execution_id, exc_info=True)

    def send_blocking(self, execution_id: str, event: str, data: str, *,
                      key: str | None = None, kind: str = REPORT) -> Appended:
        """:meth:`send` for a thread with no running loop."""
        return run_sync("send_sse_event", lambda: self.send(execution_id, event, data, key=key,
                                                            kind=kind))

    def close_blocking(self, execution_id: str) -> int:
        """:meth:`close` for a thread with no running loop."""
        return run_sync("close_sse_connections", self.close, execution_id)


class LoggedThenPublished(Delivery):
    """Redis store, channels_redis layer: sync sends skip the loop for the log."""

    name = "blocking log, ordered background publishing"

    def send_blocking(self, execution_id: str, event: str, data: str, *,
                      key: str | None = None, kind: str = REPORT) -> Appended:
        refuse_in_loop("send_sse_event")
        appended: Appended = self.store.append_blocking(  # type: ignore[attr-defined]
            execution_id, event, data, key=key, kind=kind)
        if _fresh(appended):
            publisher().submit(group_name(execution_id),
                               message(execution_id, int(appended), event, data))
        return appended

    def close_blocking(self, execution_id: str) -> int:
        refuse_in_loop("close_sse_connections")
        event_id, first = self.store.close_blocking(execution_id)  # type: ignore[attr-defined]
        if first:
            closed = self.store.closed_event(execution_id, event_id)
            publish = publisher()
            publish.submit(group_name(execution_id),
                           message(execution_id, event_id, STREAM_CLOSED, closed.data))
            publish.flush()
        return event_id


class Fused(LoggedThenPublished):
    """The log's script delivers the event itself: one round trip per send."""

    name = "one Redis script logs and delivers"

    def __init__(self, store: Store, layer: Any, kind: str) -> None:
        super().__init__(store, layer)
        self.kind = kind

    def plan(self, execution_id: str, event: str, data: str) -> tuple[str, list[Any]] | None:
        """The delivery tail and its arguments for this event, or None (then publish)."""
        plan = fused.delivery_plan(
            self.layer, self.kind, group_name(execution_id),
            message(execution_id, fused.ID_PLACEHOLDER, event, data,
                    fused.TIME_PLACEHOLDER))
        if plan is None:
            return None
        kind, args = plan
        return fused.TAILS[kind], args

    async def send(self, execution_id: str, event: str, data: str, *, key: str | None = None,
                   kind: str = REPORT) -> Appended:
        plan = self.plan(execution_id, event, data)
        if plan is None:
            return await super().send(execution_id, event, data, key=key, kind=kind)
        store: Any = self.store  # a RedisStore: its append takes the delivery plan
        appended: Appended = await store.append(execution_id, event, data, plan, key=key,
                                                kind=kind)
        return appended

    def send_blocking(self, execution_id: str, event: str, data: str, *,
                      key: str | None = None, kind: str = REPORT) -> Appended:
        refuse_in_loop("send_sse_event")
        plan = self.plan(execution_id, event, data)
        if plan is None:
            return super().send_blocking(execution_id, event, data, key=key, kind=kind)
        return self.store.append_blocking(  # type: ignore[attr-defined]
            execution_id, event, data, plan, key=key, kind=kind)

    async def check(self) -> str | None:
        """Probe: None if a fused send arrives through the layer's public ``receive()``,
        through every host of the store."""
        async def send(execution_id: str) -> int:
            try:
                return await self.send(execution_id, "probe", "0")
            finally:
                await self.store.delete(execution_id)

        for execution_id in _one_per_host(self.store):
            problem = await fused.probe(
                send, lambda execution_id, event_id: message(
                    execution_id, event_id, "probe", "0"), execution_id)
            if problem is not None:
                return problem
        return None


def _one_per_host(store: Any) -> list[str]:
    """Probe execution ids, one on each of the store's hosts."""
    hosts = len(getattr(store, "hosts", [None]))
    host_of = getattr(store, "host_of", lambda execution_id: 0)
    found: dict[int, str] = {}
    for _ in range(100 * hosts):
        execution_id = fused.probe_execution_id()
        found.setdefault(host_of(execution_id), execution_id)
        if len(found) == hosts:
            break
    return [found[index] for index in sorted(found)]


_chosen: Delivery | None = None
_lock = threading.Lock()


def _candidate(store: Store, layer: Any) -> Delivery:
    if not (hasattr(store, "append_blocking") and versions.is_redis_layer(layer)):
        return Delivery(store, layer)
    # With REDIS_WAIT_REPLICAS the event is published only after replicas have it
    # (a fused script would publish it first, and a failover could then take back
    # an event that a client already saw).
    fusable = getattr(store, "shares_layer_redis", False) and not getattr(
        store, "replica_acks", None)
    kind = fused.fusable_kind(layer) if fusable else None
    if kind is None:
        if not versions.version_is_tested():
            logger.warning("channels_redis %s is not a version this app was tested with; "
                           "sends use the layer's public API", versions.installed_version())
        return LoggedThenPublished(store, layer)
    return Fused(store, layer, kind)


async def _verified(delivery: Delivery) -> Delivery:
    """The delivery after its probe; raises StoreUnavailable (nothing is cached) if
    Redis cannot be reached."""
    if isinstance(delivery, Fused):
        try:
            problem = await delivery.check()
        except StoreUnavailable:
            raise
        except Exception as exc:
            if isinstance(exc, (OSError, asyncio.TimeoutError)) or \
                    type(exc).__module__.startswith("redis."):  # the layer's own client
                raise StoreUnavailable(f"Redis is unavailable: {exc}") from exc
            raise
        if problem is not None:
            logger.warning("delivering events from inside Redis did not work with this "
                           "channels_redis (%s); falling back to the layer's group_send",
                           problem)
            return LoggedThenPublished(delivery.store, delivery.layer)
    return delivery


#: One lock per event loop: concurrent first sends wait for one probe instead of
#: each running its own (hundreds of probes at once exhausted the connection pool).
_choosing: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary())


async def aget_delivery() -> Delivery:
    """The process's delivery, chosen (and probed, once) on first use."""
    global _chosen
    chosen = _chosen
    if chosen is not None and chosen.store is get_store():
        return chosen
    lock = _choosing.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        chosen = _chosen
        if chosen is None or chosen.store is not get_store():
            chosen = await _verified(_candidate(get_store(), get_layer()))
            _chosen = chosen
    return chosen


def get_delivery(caller: str = "send_sse_event") -> Delivery:
    """:func:`aget_delivery` for threads with no running loop (probes on the private loop).

    ``caller`` names the public helper in the error raised inside a running loop.
    """
    refuse_in_loop(caller)
    chosen = _chosen
    if chosen is not None and chosen.store is get_store():
        return chosen
    with _lock:
        return run_sync(caller, aget_delivery)


@receiver(setting_changed)
def _on_setting_changed(setting: str, **kwargs: object) -> None:
    global _chosen
    if setting in ("SSE_EXEC", "CHANNEL_LAYERS"):
        _chosen = None
