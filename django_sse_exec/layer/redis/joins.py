"""Joining many groups at once, on channels_redis's pub/sub internals.

Part of :mod:`django_sse_exec.layer.redis` (the one place that knows
channels_redis's layout). ``RedisPubSubChannelLayer.group_add`` sends one
``SUBSCRIBE`` per group, each under the shard's lock; a hub whose streams
connect to thousands of executions at once joins them here with one
``SUBSCRIBE`` of many channels per shard instead. Any other layer, or a
channels_redis whose internals are not the tested ones, gets one ``group_add``
per group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from .versions import version_is_tested

#: Concurrent ``group_add`` calls when the layer has no batched join.
FALLBACK_CONCURRENCY = 16


async def group_add_many(layer: Any, groups: Sequence[str], channel: str) -> list[Any]:
    """Add ``channel`` to every group of ``groups``, in as few round trips as the layer allows.

    Returns one result per group: None, or the exception that group's join
    raised (on the pub/sub layer one ``SUBSCRIBE`` joins them all, so a
    failure raises for all of them).
    """
    loop_layer = _pubsub_loop_layer(layer)
    if loop_layer is None or channel not in loop_layer.channels:
        results: list[Any] = []
        for start in range(0, len(groups), FALLBACK_CONCURRENCY):
            results += await asyncio.gather(
                *(layer.group_add(group, channel)
                  for group in groups[start:start + FALLBACK_CONCURRENCY]),
                return_exceptions=True)
        return results
    by_shard: dict[int, tuple[Any, list[str]]] = {}
    for group in groups:
        group_channel = loop_layer._get_group_channel_name(group)
        loop_layer.groups.setdefault(group_channel, set()).add(channel)
        shard = loop_layer._get_shard(group_channel)
        by_shard.setdefault(id(shard), (shard, []))[1].append(group_channel)
    for shard, names in by_shard.values():
        async with shard._lock:
            new = [name for name in dict.fromkeys(names) if name not in shard._subscribed_to]
            if new:
                shard._ensure_redis()
                shard._ensure_receiver()
                await shard._pubsub.subscribe(*new)
                shard._subscribed_to.update(new)
    return [None] * len(groups)


def _pubsub_loop_layer(layer: Any) -> Any:
    """The pub/sub layer's per-loop layer when its internals are the tested ones, else None."""
    if type(layer).__name__ != "RedisPubSubChannelLayer" or not version_is_tested():
        return None
    try:
        loop_layer = layer._get_layer()
    except AttributeError:
        return None
    if not all(hasattr(loop_layer, name) for name in (
            "channels", "groups", "_shards", "_get_shard", "_get_group_channel_name")):
        return None
    if not all(all(hasattr(shard, name) for name in (
            "_lock", "_subscribed_to", "_ensure_redis", "_ensure_receiver", "_pubsub"))
            for shard in loop_layer._shards):
        return None
    return loop_layer
