"""Access to the channel layer the app publishes on, and cheaper ways to publish.

With no ``CHANNEL_LAYERS`` configured the app still works in one process: it
uses a private in-memory layer with a large capacity (the embedded default).

Publishing is the cost of a send. For senders with no event loop (Celery
workers, sync views) the Redis store's append script delivers the event itself,
in the bytes the layer serialised (:func:`publish_template`: a ``PUBLISH`` on
``RedisPubSubChannelLayer``, what ``group_send`` does on ``RedisChannelLayer``),
so a send is one round trip; other configurations publish in pipelined batches
(:func:`group_send_in_order`). Both rely on channels_redis's message format,
key and channel naming (4.x), checked by the tests against the real layers;
anything they do not recognise falls back to plain ``group_send``.
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
    trip, order kept). On ``RedisChannelLayer`` each group's messages are sent as
    one pipelined batch (:func:`_core_group_send_batch`). Any other layer gets one
    ``group_send`` each, each awaited before the next: concurrent sends are
    reordered by the layer.
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
    if _is_core_layer(layer):
        by_group: dict[str, list[dict[str, Any]]] = {}
        for group, message in messages:
            by_group.setdefault(group, []).append(message)
        for group, batch in by_group.items():
            await _core_group_send_batch(layer, group, batch)
        return
    for group, message in messages:
        await layer.group_send(group, message)


# RedisChannelLayer.group_send's own script: add the message to each channel's
# sorted set (score: send time) unless the channel is at capacity.
_CORE_GROUP_SEND = """
local over_capacity = 0
local current_time = ARGV[#ARGV - 1]
local expiry = ARGV[#ARGV]
for i=1,#KEYS do
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""

#: Score step between messages of one batch: far above a double's resolution
#: at today's timestamps (~2.4e-7 s), so receivers pop them in order.
_SCORE_STEP = 1e-5
_last_score: "weakref.WeakKeyDictionary[Any, float]" = weakref.WeakKeyDictionary()


def _is_core_layer(layer: Any) -> bool:
    return type(layer).__name__ == "RedisChannelLayer" and is_redis_layer(layer) and all(
        hasattr(layer, name) for name in ("_group_key", "connection", "consistent_hash",
                                          "_map_channel_keys_to_connection", "group_expiry",
                                          "expiry"))


_core_scripts: list[Any] = []


def _core_script(connection: Any) -> Any:
    """The batch script object (it only holds the SHA; it runs on the client given)."""
    if not _core_scripts:
        _core_scripts.append(connection.register_script(_CORE_GROUP_SEND))
    return _core_scripts[0]


async def _core_group_send_batch(layer: Any, group: str, messages: list[dict[str, Any]]) -> None:
    """``RedisChannelLayer.group_send`` for several messages to one group, pipelined.

    The same steps as the layer's own (drop expired members, list the group, add
    each message to each channel's sorted set within capacity) in two round
    trips per batch instead of four per message. Scores increase by
    ``_SCORE_STEP`` so the batch is received in order.
    """
    import time

    key = layer._group_key(group)
    connection = layer.connection(layer.consistent_hash(group))
    async with connection.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(key, min=0, max=int(time.time()) - layer.group_expiry)
        pipe.zrange(key, 0, -1)
        _, members = await pipe.execute()
    channel_names = [name.decode("utf8") for name in members]
    if not channel_names:
        return
    score = max(time.time(), _last_score.get(layer, 0.0) + _SCORE_STEP)
    calls: dict[int, list[tuple[list[Any], list[Any]]]] = {}
    for message in messages:
        by_connection, key_message, key_capacity = layer._map_channel_keys_to_connection(
            channel_names, message)
        for index, keys in by_connection.items():
            args = [key_message[k] for k in keys] + [key_capacity[k] for k in keys]
            calls.setdefault(index, []).append((keys, [*args, score, layer.expiry]))
        score += _SCORE_STEP
    _last_score[layer] = score
    for index, batch in calls.items():
        connection = layer.connection(index)
        script = _core_script(connection)
        async with connection.pipeline(transaction=False) as pipe:
            for channel_key in {k for keys, _ in batch for k in keys}:
                pipe.zremrangebyscore(channel_key, min=0, max=int(time.time()) - int(layer.expiry))
            for keys, args in batch:
                await script(keys=keys, args=args, client=pipe)
            await pipe.execute()


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


#: A second stand-in, for the core layer's ``__asgi_channel__`` list (filled in by Redis).
_CHANNELS_PLACEHOLDER = 0xFEDC_BA98_7654_3211
_CHANNELS_PLACEHOLDER_BYTES = b"\xcf" + _CHANNELS_PLACEHOLDER.to_bytes(8, "big")

#: What the Redis store's script needs to deliver an event itself: a kind
#: ("pubsub" or "core") and its script arguments.
PublishPlan = tuple[str, list[Any]]


def publish_template(layer: Any, group: str, message: dict[str, Any]) -> PublishPlan | None:
    """How Redis itself can deliver ``message`` to ``group``, or None.

    ``message["id"]`` must be :data:`ID_PLACEHOLDER`. The layer serialises the
    message once; the placeholder's bytes (msgpack's uint64 marker + 8 bytes)
    split it so that the store's append script can splice in the id it assigns
    and deliver exactly what the layer's own ``group_send`` would:

    * ``RedisPubSubChannelLayer`` (one host, no encryption): ``("pubsub",
      [channel, head, tail])``, the script ``PUBLISH``es ``head + id + tail``;
    * ``RedisChannelLayer`` (one host, no encryption, no ``channel_capacity``):
      ``("core", [group key, prefix, head, middle, capacity, expiry,
      group_expiry])``; the script does what ``group_send`` does — drops expired
      members, adds ``head + id + middle + <msgpack list of the channels>`` to
      each member channel's sorted set within capacity, sets its expiry.

    Any other layer or configuration: None (callers publish with ``group_send``).
    """
    try:
        kind = _fusable[layer]
    except KeyError:
        kind = _fusable[layer] = _fusable_kind(layer)
    if kind is None:
        return None
    if kind != "core":  # "pubsub:<channel prefix>"
        head, found, tail = layer.serialize(message).partition(_PLACEHOLDER_BYTES)
        if not found or _PLACEHOLDER_BYTES in tail:
            return None
        return "pubsub", [f"{kind[7:]}__group__{group}", head + _PLACEHOLDER_BYTES[:1], tail]
    packed = layer.serialize({**message, "__asgi_channel__": _CHANNELS_PLACEHOLDER})
    head, found, rest = packed.partition(_PLACEHOLDER_BYTES)
    middle, found_channels, tail = rest.partition(_CHANNELS_PLACEHOLDER_BYTES)
    if not found or not found_channels or tail or _PLACEHOLDER_BYTES in rest:
        return None
    return "core", [layer._group_key(group), layer.prefix, head + _PLACEHOLDER_BYTES[:1],
                    middle, layer.capacity, int(layer.expiry), int(layer.group_expiry)]


_fusable: "weakref.WeakKeyDictionary[Any, str | None]" = weakref.WeakKeyDictionary()


def can_publish_from_redis(layer: Any) -> bool:
    """Whether :func:`publish_template` works for ``layer`` (see there)."""
    return _fusable_kind(layer) is not None


def _layer_config(layer: Any) -> dict[str, Any]:
    return (getattr(settings, "CHANNEL_LAYERS", None) or {}).get(
        sse_settings.CHANNEL_LAYER, {}).get("CONFIG", {}) or {}


def _fusable_kind(layer: Any) -> str | None:
    """"core", or "pubsub:<channel prefix>", when Redis can deliver this layer's
    messages itself; else None."""
    if not is_redis_layer(layer):
        return None
    config = _layer_config(layer)
    if len(config.get("hosts") or [None]) != 1 or config.get("symmetric_encryption_keys"):
        return None
    if config.get("serializer_format", "msgpack") != "msgpack":
        return None
    name = type(layer).__name__
    if name == "RedisPubSubChannelLayer":
        return f"pubsub:{config.get('prefix', 'asgi')}"
    if name == "RedisChannelLayer" and not config.get("channel_capacity") and all(
            hasattr(layer, attr) for attr in ("_group_key", "prefix", "capacity", "expiry",
                                              "group_expiry")):
        return "core"
    return None


