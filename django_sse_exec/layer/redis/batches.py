"""Ordered, pipelined publishing for background senders, on channels_redis's internals.

Part of :mod:`django_sse_exec.layer.redis` (the one place that knows
channels_redis's layout): when a sync sender cannot have Redis deliver its
events itself, the ordered background publisher sends them in batches here —
one pipeline of ``PUBLISH`` commands on the pub/sub layer, two round trips per
batch on the core layer — instead of one awaited ``group_send`` each.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from typing import Any

from .versions import is_redis_layer, version_is_tested


async def group_send_in_order(layer: Any, messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Send ``(group, message)`` pairs in order, as cheaply as the layer allows.

    On ``RedisPubSubChannelLayer`` with one host all messages go as one pipeline
    of ``PUBLISH`` commands on the layer's publishing connection; on
    ``RedisChannelLayer`` (any number of hosts) each group's messages go as one
    pipelined batch. With
    any other layer, an untested channels_redis, or internals not as expected:
    one ``group_send`` each, awaited in turn (concurrent sends get reordered).
    """
    # Batching only re-uses the layer's own serialisation, scripts and host choice,
    # so any host count, serializer or encryption goes (but only on tested versions).
    kind = {"RedisPubSubChannelLayer": "pubsub", "RedisChannelLayer": "core"}.get(
        type(layer).__name__) if is_redis_layer(layer) and version_is_tested() else None
    shard = _pubsub_shard(layer) if kind == "pubsub" else None
    if shard is not None:
        loop_layer, connection = shard
        async with connection._lock:
            connection._ensure_redis()
            async with connection._redis.pipeline(transaction=False) as pipe:
                for group, message in messages:
                    pipe.publish(loop_layer._get_group_channel_name(group), layer.serialize(message))
                await pipe.execute()
        return
    if kind == "core" and all(hasattr(layer, name) for name in (
            "connection", "consistent_hash", "_map_channel_keys_to_connection")):
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
local current_time = ARGV[#ARGV - 1]
local expiry = ARGV[#ARGV]
for i=1,#KEYS do
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    end
end
return 0
"""

#: Score step between messages of one batch: far above a double's resolution
#: at today's timestamps (~2.4e-7 s), so receivers pop them in order.
_SCORE_STEP = 1e-5
_last_score: "weakref.WeakKeyDictionary[Any, float]" = weakref.WeakKeyDictionary()
_core_scripts: list[Any] = []


async def _core_group_send_batch(layer: Any, group: str, messages: list[dict[str, Any]]) -> None:
    """``RedisChannelLayer.group_send`` for several messages to one group, pipelined:
    two round trips per batch instead of four per message; scores increase by
    ``_SCORE_STEP`` so the batch is received in order."""
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
        if not _core_scripts:
            _core_scripts.append(connection.register_script(_CORE_GROUP_SEND))
        async with connection.pipeline(transaction=False) as pipe:
            for channel_key in {k for keys, _ in batch for k in keys}:
                pipe.zremrangebyscore(channel_key, min=0, max=int(time.time()) - int(layer.expiry))
            for keys, args in batch:
                await _core_scripts[0](keys=keys, args=args, client=pipe)
            await pipe.execute()


def _pubsub_shard(layer: Any) -> tuple[Any, Any] | None:
    """The pub/sub layer's per-loop layer and its single shard, or None."""
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
