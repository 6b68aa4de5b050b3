"""Which of several Redis hosts channels_redis uses for a group: its rule, reproduced.

Part of :mod:`django_sse_exec.layer.redis` (the one place that knows
channels_redis's internals). With several ``hosts`` both channels_redis layers
shard by ``crc32(name) & 0xFFF`` scaled onto the host list
(``channels_redis.utils._consistent_hash``), but they hash different names for
a group:

* ``RedisChannelLayer`` (core) hashes the group name itself: the group's
  sorted set lives there (its member channels' message sets may live elsewhere,
  hashed by each channel's name);
* ``RedisPubSubChannelLayer`` hashes the group's pub/sub channel,
  ``<prefix>__group__<group>``: it publishes and subscribes there.

The event store puts each execution's keys (log, membership, lease) on the
host this rule gives for the execution's group, so every process, with no
coordination, agrees on one host per execution, and on the pub/sub layer the
log's script can publish the event on the very Redis its subscribers listen to.
:func:`rule_matches` checks the reproduction against a live layer's own choice
before anything relies on it.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from typing import Any

from django.utils.module_loading import import_string

#: The layers' ``BACKEND`` classes by kind.
BACKENDS = {"core": "channels_redis.core.RedisChannelLayer",
            "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer"}


def consistent_hash(value: str, ring_size: int) -> int:
    """The host index channels_redis gives ``value`` among ``ring_size`` hosts."""
    if ring_size == 1:
        return 0
    bigval = binascii.crc32(value.encode("utf8")) & 0xFFF
    return int(bigval / (4096 / float(ring_size)))


def kind_of_backend(backend: Any) -> str | None:
    """"core" or "pubsub" for a channels_redis ``BACKEND`` (dotted path or class,
    subclasses included); None for anything else."""
    try:
        cls = import_string(backend) if isinstance(backend, str) else backend
    except ImportError:
        return None
    for kind, path in BACKENDS.items():
        try:
            if isinstance(cls, type) and issubclass(cls, import_string(path)):
                return kind
        except ImportError:
            continue
    return None


def sharded_name(kind: str | None, layer_prefix: str, group: str) -> str:
    """The name the layer of ``kind`` hashes to place ``group``."""
    if kind == "pubsub":
        return f"{layer_prefix}__group__{group}"
    return group


def host_index(kind: str | None, layer_prefix: str, group: str, ring_size: int) -> int:
    """The index (in the layer's ``hosts``) of the host holding ``group``."""
    return consistent_hash(sharded_name(kind, layer_prefix, group), ring_size)


def layer_host_index(layer: Any, kind: str, group: str) -> int | None:
    """The host index the live ``layer`` itself uses for ``group``, or None if its
    internals are not as expected. Call it inside a running event loop (the
    pub/sub layer keeps one inner layer per loop)."""
    try:
        if kind == "core":
            return int(layer.consistent_hash(group))
        inner = layer._get_layer()
        shard = inner._get_shard(inner._get_group_channel_name(group))
        return int(inner._shards.index(shard))
    except (AttributeError, ValueError, TypeError):
        return None


def rule_matches(layer: Any, kind: str, layer_prefix: str, groups: Iterable[str]) -> bool:
    """True when :func:`host_index` agrees with the live layer for every one of ``groups``."""
    ring_size = host_count(layer, kind)
    if ring_size is None:
        return False
    return all(layer_host_index(layer, kind, group) == host_index(kind, layer_prefix, group,
                                                                  ring_size)
               for group in groups)


def host_count(layer: Any, kind: str) -> int | None:
    """How many hosts the live layer shards over, or None if that cannot be read."""
    try:
        if kind == "core":
            return int(layer.ring_size)
        return len(layer._get_layer()._shards)
    except (AttributeError, TypeError):
        return None
