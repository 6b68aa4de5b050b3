"""Access to the channel layer the app publishes on, and cheaper ways to publish.

With no ``CHANNEL_LAYERS`` configured the app still works in one process: it
uses a private in-memory layer with a large capacity (the embedded default).

Publishing is the cost of a send. For senders with no event loop (Celery
workers, sync views) two faster paths exist: on ``RedisPubSubChannelLayer`` the
Redis store's append script publishes the layer's own message bytes itself
(:func:`publish_template`), and batches are published as one pipeline
(:func:`group_send_in_order`). Both use channels_redis's message format and
channel naming, checked by the tests against the real layers; anything they do
not recognise falls back to plain ``group_send``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from .conf import sse_settings

_embedded: InMemoryChannelLayer | None = None


def get_layer() -> Any:
    """The channel layer for ``SSE_EXEC["CHANNEL_LAYER"]``, or the embedded one."""
    global _embedded
    if getattr(settings, "CHANNEL_LAYERS", None):
        layer = get_channel_layer(sse_settings.CHANNEL_LAYER)
        if layer is not None:
            return layer
    if _embedded is None:
        _embedded = InMemoryChannelLayer(capacity=10_000)
    return _embedded


def is_redis_layer(layer: Any = None) -> bool:
    """True when the layer is one of channels_redis's (core or pub/sub)."""
    layer = get_layer() if layer is None else layer
    return type(layer).__module__.startswith("channels_redis")


def is_memory_layer(layer: Any = None) -> bool:
    """True for channels' in-memory layer, which works inside one process only."""
    layer = get_layer() if layer is None else layer
    return isinstance(layer, InMemoryChannelLayer)


def group_name(execution_id: str) -> str:
    """The channel-layer group of an execution (ids are pre-validated, so it is valid)."""
    return f"{sse_settings.KEY_PREFIX}.{execution_id}"


async def group_send_in_order(layer: Any, messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Send ``(group, message)`` pairs in order, as cheaply as the layer allows.

    On ``RedisPubSubChannelLayer`` with one host, all messages go as one pipeline
    of ``PUBLISH`` commands on the layer's own publishing connection (one round
    trip, order kept). Any other layer gets one ``group_send`` each, each awaited
    before the next: concurrent sends are reordered by the layer.
    """
    shard = _pubsub_shard(layer)
    if shard is not None:
        loop_layer, connection = shard
        async with connection._lock:
            connection._ensure_redis()
            async with connection._redis.pipeline(transaction=False) as pipe:
                for group, message in messages:
                    pipe.publish(loop_layer._get_group_channel_name(group), layer.serialize(message))
                await pipe.execute()
        return
    for group, message in messages:
        await layer.group_send(group, message)


def _pubsub_shard(layer: Any) -> tuple[Any, Any] | None:
    """The pub/sub layer's per-loop layer and its single shard, or None.

    These are channels_redis internals (stable through 4.x); if they are not
    what we expect, callers fall back to plain ``group_send``.
    """
    if type(layer).__name__ != "RedisPubSubChannelLayer" or not is_redis_layer(layer):
        return None
    try:
        loop_layer = layer._get_layer()
        shards = loop_layer._shards
        if len(shards) != 1:
            return None
        shard = shards[0]
        if not (hasattr(shard, "_lock") and hasattr(shard, "_ensure_redis")
                and hasattr(loop_layer, "_get_group_channel_name")):
            return None
        return loop_layer, shard
    except AttributeError:
        return None


#: A stand-in event id whose msgpack form is 0xcf + 8 bytes (a uint64), so the
#: real id can be spliced in by Redis (see :func:`publish_template`).
ID_PLACEHOLDER = 0xFEDC_BA98_7654_3210
_PLACEHOLDER_BYTES = b"\xcf" + ID_PLACEHOLDER.to_bytes(8, "big")


def publish_template(layer: Any, group: str,
                     message: dict[str, Any]) -> tuple[str, bytes, bytes] | None:
    """How to publish ``message`` to ``group`` from inside Redis, or None.

    ``message["id"]`` must be :data:`ID_PLACEHOLDER`. For ``RedisPubSubChannelLayer``
    with one host and the msgpack serializer without encryption, returns
    ``(channel, head, tail)`` such that ``head + <id as big-endian uint64> + tail``
    is exactly what the layer's own ``group_send`` would publish (``head`` ends
    with msgpack's uint64 marker, so the 8 bytes read as the same integer). The
    Redis store uses it to log and publish an event in one script. Any other
    layer: None.
    """
    try:
        prefix = _fusable[layer]
    except KeyError:
        prefix = _fusable[layer] = _pubsub_prefix(layer)
    if prefix is None:
        return None
    head, found, tail = layer.serialize(message).partition(_PLACEHOLDER_BYTES)
    if not found or _PLACEHOLDER_BYTES in tail:
        return None
    return f"{prefix}__group__{group}", head + _PLACEHOLDER_BYTES[:1], tail


_fusable: "weakref.WeakKeyDictionary[Any, str | None]" = weakref.WeakKeyDictionary()


def _pubsub_prefix(layer: Any) -> str | None:
    """The channel prefix of a single-host, unencrypted msgpack pub/sub layer, else None."""
    if type(layer).__name__ != "RedisPubSubChannelLayer" or not is_redis_layer(layer):
        return None
    config = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get(
        sse_settings.CHANNEL_LAYER, {}).get("CONFIG", {}) or {}
    if len(config.get("hosts") or [None]) != 1 or config.get("symmetric_encryption_keys"):
        return None
    if config.get("serializer_format", "msgpack") != "msgpack":
        return None
    return str(config.get("prefix", "asgi"))
