"""The fused send: the event-log script delivers an event to the channel layer itself.

Part of :mod:`django_sse_exec.layer.redis` (the one place that knows
channels_redis's layout; its docstring says when this knowledge is used). A
send on Redis is cheapest when the script that appends to the log also does
what ``group_send`` would: ``PUBLISH`` on the pub/sub layer, the group's
channel lists on the core layer. :func:`delivery_plan` splits the layer's own
serialisation of a message around placeholders the script fills in, and
:func:`probe` checks the whole path end to end through the layer's public API.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from typing import Any

from channels.layers import channel_layers

from ...conf import sse_settings
from ..names import group_name
from . import shards
from .versions import is_redis_layer, layer_config, version_is_tested

__all__ = ["DeliveryPlan", "ID_PLACEHOLDER", "TAILS", "TIME_PLACEHOLDER", "delivery_plan",
           "fusable_kind", "probe", "probe_execution_id"]

logger = logging.getLogger("django_sse_exec")

#: Stand-ins spliced out of a serialised message so Redis can put in the real
#: values: msgpack's uint64 (0xcf) for the event id, float64 (0xcb) for the send
#: time, and a uint64 for the core layer's list of channels.
ID_PLACEHOLDER = 0xFEDC_BA98_7654_3210
TIME_PLACEHOLDER = -1.2345678901234567e-300
CHANNELS_PLACEHOLDER = 0xFEDC_BA98_7654_3211
_ID_BYTES = b"\xcf" + ID_PLACEHOLDER.to_bytes(8, "big")
_CHANNELS_BYTES = b"\xcf" + CHANNELS_PLACEHOLDER.to_bytes(8, "big")

#: What a Redis script needs to deliver a message itself: a kind ("pubsub" or
#: "core") and the script's delivery arguments.
DeliveryPlan = tuple[str, list[Any]]

# Delivery tails of the store's append script. They run after the body has
# assigned the event's id (local ``id``) and read arguments from ARGV[d] on.
#
# pub/sub: PUBLISH to channel ARGV[d] the message head .. id .. mid .. time .. tail.
PUBSUB_TAIL = """
local t = redis.call('TIME')
redis.call('PUBLISH', ARGV[d], ARGV[d + 1] .. struct.pack('>I8', id) .. ARGV[d + 2]
  .. struct.pack('>d', tonumber(t[1]) + tonumber(t[2]) / 1000000) .. ARGV[d + 3])
"""
# core: what RedisChannelLayer.group_send does for the group whose key is ARGV[d]:
# drop members older than group_expiry (ARGV[d + 7]), then add to each member
# channel's sorted set (key: layer prefix ARGV[d + 1] + the channel's non-local
# part) the message head .. id .. mid .. time .. tail .. <msgpack list of its
# channels>, scored by the time, unless the set holds capacity (ARGV[d + 5])
# messages; the set expires after ARGV[d + 6] seconds.
CORE_TAIL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', ARGV[d], 0, tonumber(t[1]) - tonumber(ARGV[d + 7]))
local keys, channels = {}, {}
for _, name in ipairs(redis.call('ZRANGE', ARGV[d], 0, -1)) do
  local bang = string.find(name, '!', 1, true)
  local key = ARGV[d + 1] .. (bang and string.sub(name, 1, bang) or name)
  if channels[key] == nil then
    channels[key] = {}
    keys[#keys + 1] = key
  end
  table.insert(channels[key], name)
end
local body = ARGV[d + 2] .. struct.pack('>I8', id) .. ARGV[d + 3] .. struct.pack('>d', now)
  .. ARGV[d + 4]
for _, key in ipairs(keys) do
  redis.call('ZREMRANGEBYSCORE', key, 0, tonumber(t[1]) - tonumber(ARGV[d + 6]))
  if redis.call('ZCARD', key) < tonumber(ARGV[d + 5]) then
    redis.call('ZADD', key, now, body .. cmsgpack.pack(channels[key]))
    redis.call('EXPIRE', key, ARGV[d + 6])
  end
end
"""
TAILS = {"pubsub": PUBSUB_TAIL, "core": CORE_TAIL}


def fusable_kind(layer: Any) -> str | None:
    """"core" or "pubsub" when a Redis script can deliver this layer's messages; else None."""
    if not is_redis_layer(layer) or not version_is_tested():
        return None
    config = layer_config()
    if config.get("symmetric_encryption_keys"):
        return None
    if config.get("serializer_format", "msgpack") != "msgpack":
        return None
    name = type(layer).__name__
    if len(config.get("hosts") or [None]) != 1:
        return "pubsub" if name == "RedisPubSubChannelLayer" and _shards_match(layer) else None
    if name == "RedisPubSubChannelLayer":
        return "pubsub"
    if name == "RedisChannelLayer" and not config.get("channel_capacity") and all(
            hasattr(layer, attr) for attr in ("_group_key", "prefix", "capacity", "expiry",
                                              "group_expiry")):
        return "core"
    return None


def _shards_match(layer: Any) -> bool:
    """Whether the pub/sub layer's choice of host for a group is :mod:`.shards`'s (checked
    on a sample of groups; needs a running loop, as the layer's internals do)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    prefix = str(layer_config().get("prefix", "asgi"))
    return shards.rule_matches(layer, "pubsub", prefix,
                               (group_name(f"shard-check-{i}") for i in range(64)))


def _split(packed: bytes, marker: bytes) -> tuple[bytes, bytes] | None:
    head, found, tail = packed.partition(marker)
    if not found or marker in tail:
        return None
    return head, tail


def delivery_plan(layer: Any, kind: str, group: str, message: dict[str, Any]) -> DeliveryPlan | None:
    """How a Redis script delivers ``message`` to ``group`` as the layer would, or None.

    ``message["id"]`` must be :data:`ID_PLACEHOLDER` and ``message["t"]``
    :data:`TIME_PLACEHOLDER`; the layer serialises the message once and the
    placeholders' bytes split it so the script can splice in the id it assigns
    and Redis's time.
    """
    extra = {"__asgi_channel__": CHANNELS_PLACEHOLDER} if kind == "core" else {}
    packed = layer.serialize({**message, **extra})
    time_bytes = b"\xcb" + _float_bytes(TIME_PLACEHOLDER)
    first = _split(packed, _ID_BYTES)
    second = first and _split(first[1], time_bytes)
    if not first or not second:
        return None
    head, (mid, tail) = first[0] + b"\xcf", second
    mid += b"\xcb"
    if kind == "pubsub":
        channel = f"{layer_config().get('prefix', 'asgi')}__group__{group}"
        return "pubsub", [channel, head, mid, tail]
    third = _split(tail, _CHANNELS_BYTES)
    if not third or third[1]:
        return None
    return "core", [layer._group_key(group), layer.prefix, head, mid, third[0],
                    layer.capacity, int(layer.expiry), int(layer.group_expiry)]


def _float_bytes(value: float) -> bytes:
    return struct.pack(">d", value)


async def probe(send: Any, message_for: Any, execution_id: str | None = None) -> str | None:
    """Check the fused delivery end to end; None if it works, else what went wrong.

    ``send(execution_id)`` must log a probe event through the fused script and
    return its id; ``message_for(execution_id, id)`` is the message
    ``group_send`` would have sent. The message is received through the public
    API of a fresh instance of the configured layer (the core layer allows one
    receiving event loop per instance, and the app's own may be busy in
    another loop) and compared field by field. ``execution_id`` (default: a new
    one) picks the execution, and so the host, the probe goes through.
    """
    listener = channel_layers.make_backend(sse_settings.CHANNEL_LAYER)
    execution_id = execution_id or probe_execution_id()
    group = group_name(execution_id)
    channel = await listener.new_channel(prefix="sse_exec_probe.")
    await listener.group_add(group, channel)
    receiving = asyncio.ensure_future(listener.receive(channel))
    try:
        event_id = await send(execution_id)
        done, _ = await asyncio.wait({receiving}, timeout=5.0)
        if not done:
            return "no message arrived within 5 s"
        got = dict(receiving.result())
        sent_at = got.pop("t", None)
        expected = message_for(execution_id, event_id)
        expected.pop("t", None)
        if got != expected:
            return f"received {got!r}, expected {expected!r}"
        if not isinstance(sent_at, float) or abs(sent_at - time.time()) > 60:
            return f"the send time came out as {sent_at!r}"
        return None
    finally:
        receiving.cancel()
        # Bounded, and never waiting for a cancellation to finish: channels_redis 4.2's
        # core receive, cancelled mid-read, can stay "cancelling" for good, and
        # ``wait_for`` (or ``gather``) on it would then hang the first send with it.
        releasing = asyncio.ensure_future(_release(listener, receiving, group, channel))
        done, _ = await asyncio.wait({releasing}, timeout=5.0)
        if not done:
            releasing.cancel()
            logger.debug("cleaning up after the delivery probe took over 5 s; left behind")
        elif releasing.exception() is not None:
            logger.debug("cleaning up after the delivery probe failed",
                         exc_info=releasing.exception())


def probe_execution_id() -> str:
    """A fresh execution id for a probe."""
    return f"probe.{uuid.uuid4().hex}"


async def _release(listener: Any, receiving: asyncio.Future[Any], group: str, channel: str) -> None:
    await asyncio.wait({receiving}, timeout=1.0)  # its cancellation may never finish
    await listener.group_discard(group, channel)
    closing = getattr(listener, "close_pools", None) or getattr(listener, "flush", None)
    if closing is not None:
        await closing()

