"""The event store on several Redis hosts, and the settings around it.

Pure parts (channels_redis's host rule reproduced, host entries parsed, the
system checks) and the store itself against private redis-servers: keys of an
execution on one host, an epoch marker per host, leases claimed on every host,
and WAIT for replicas.
"""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from django.test import override_settings

from django_sse_exec.checks import check_redis_topology
from django_sse_exec.conf import check_values
from django_sse_exec.layer.redis.shards import consistent_hash, host_index, kind_of_backend
from django_sse_exec.store.hosts import HostSpec, host_spec, layer_hosts, shard_rule
from django_sse_exec.store.redis import RedisStore


def test_host_rule_is_channels_redis_own():
    from channels_redis.utils import _consistent_hash

    names = [f"sse_exec.run-{n}" for n in range(2000)] + ["asgi__group__sse_exec.é-1"]
    for ring in range(1, 6):
        assert [consistent_hash(n, ring) for n in names] == [_consistent_hash(n, ring)
                                                            for n in names]


def test_kinds_and_hashed_names():
    assert kind_of_backend("channels_redis.core.RedisChannelLayer") == "core"
    assert kind_of_backend("channels_redis.pubsub.RedisPubSubChannelLayer") == "pubsub"
    assert kind_of_backend("channels.layers.InMemoryChannelLayer") is None
    assert kind_of_backend("no.such.Layer") is None
    group = "sse_exec.run-1"
    assert host_index("core", "asgi", group, 3) == consistent_hash(group, 3)
    assert host_index("pubsub", "p", group, 3) == consistent_hash(f"p__group__{group}", 3)


def _layers(backend: str, *hosts: object) -> dict:
    return {"default": {"BACKEND": backend, "CONFIG": {"hosts": list(hosts), "prefix": "p"}}}


def test_host_entries_in_every_channels_redis_form():
    sentinel = {"sentinels": [("s1", 26379), ["s2", "26380"]], "master_name": "m",
                "sentinel_kwargs": {"password": "x"}, "password": "y", "socket_timeout": 30}
    assert host_spec("redis://a:1/2") == HostSpec(url="redis://a:1/2")
    assert host_spec(("b", 2)) == HostSpec(url="redis://b:2/0")
    assert host_spec({"address": "redis://c:3/0", "max_connections": 9, "password": "z"}) == \
        HostSpec(url="redis://c:3/0", options=(("password", "z"),))
    assert host_spec({"host": "d", "port": 4, "db": 5}) == HostSpec(url="redis://d:4/5")
    spec = host_spec(sentinel)
    assert spec.is_sentinel and spec.sentinels == (("s1", 26379), ("s2", 26380))
    assert spec.sentinel_kwargs == (("password", "x"),) and spec.options == (("password", "y"),)
    assert "sentinels s1:26379,s2:26380" in spec.describe() and "x" not in spec.describe()
    with pytest.raises(Exception, match="cannot derive"):
        host_spec({"unix_socket_path": "/tmp/r.sock"})


def test_store_follows_every_host_with_the_layers_rule():
    layers = _layers("channels_redis.pubsub.RedisPubSubChannelLayer",
                     "redis://a:1/0", "redis://b:1/0", "redis://c:1/0")
    with override_settings(CHANNEL_LAYERS=layers, SSE_EXEC={"KEY_PREFIX": "k"}):
        store = RedisStore()
        assert [h.url for h in store.hosts] == ["redis://a:1/0", "redis://b:1/0", "redis://c:1/0"]
        assert store.shares_layer_redis
        rule = shard_rule(3)
        assert all(rule(f"e{n}") == consistent_hash(f"p__group__k.e{n}", 3) for n in range(100))
        assert {rule(f"e{n}") for n in range(100)} == {0, 1, 2}
    with override_settings(CHANNEL_LAYERS=layers, SSE_EXEC={"REDIS_URL": "redis://o:1/0"}):
        store = RedisStore()
        assert [h.url for h in store.hosts] == ["redis://o:1/0"] and not store.shares_layer_redis
        assert store.host_of("anything") == 0
    # REDIS_URL naming the first of several layer hosts: the store is not the layer's.
    with override_settings(CHANNEL_LAYERS=layers, SSE_EXEC={"REDIS_URL": "redis://a:1/0"}):
        assert not RedisStore().shares_layer_redis


def test_checks_name_the_fix():
    bad = _layers("channels_redis.core.RedisChannelLayer", {"unix_socket_path": "/r.sock"})
    with override_settings(CHANNEL_LAYERS=bad, SSE_EXEC={}):
        [error] = check_redis_topology()
        assert error.id == "django_sse_exec.E014" and "REDIS_URL" in error.hint
    with override_settings(CHANNEL_LAYERS=bad, SSE_EXEC={"REDIS_URL": "redis://o:1/0"}):
        assert check_redis_topology() == []
    good = _layers("channels_redis.core.RedisChannelLayer", "redis://a:1/0", ("b", 1))
    for wait in ({"REDIS_WAIT_REPLICAS": -1}, {"REDIS_WAIT_REPLICAS": "1"},
                 {"REDIS_WAIT_REPLICAS": 1, "REDIS_WAIT_TIMEOUT": 0}):
        with override_settings(CHANNEL_LAYERS=good, SSE_EXEC=wait):  # reported by the values' check
            assert [m.id for m in check_values()] == ["django_sse_exec.E015"]
    with override_settings(CHANNEL_LAYERS=good, SSE_EXEC={"REDIS_WAIT_REPLICAS": 1}):
        assert check_redis_topology() == [] and len(layer_hosts()) == 2
    memory = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=memory, SSE_EXEC={"REDIS_WAIT_REPLICAS": 1}):
        assert [m.id for m in check_redis_topology()] == ["django_sse_exec.W014"]


async def test_sharded_store_keeps_each_execution_and_epoch_on_its_host(make_private_redis):
    servers = [make_private_redis() for _ in range(3)]
    store = RedisStore(hosts=[HostSpec(url=s.url) for s in servers], prefix="sh")
    try:
        ids = [f"run-{n}" for n in range(30)]
        for execution_id in ids:
            assert await store.append(execution_id, "step", "1") == 1
            await store.add_member(execution_id, "m")
        for execution_id in ids:
            home = store.host_of(execution_id)
            for index, server in enumerate(servers):
                keys = server.client().keys(f"sh:{{{execution_id}}}:*")
                assert len(keys) == (4 if index == home else 0), (execution_id, index, keys)
        assert {store.host_of(e) for e in ids} == {0, 1, 2}
        assert all(s.client().get("sh:epoch") == b"0" for s in servers)
        await store.refresh_members((e, "m") for e in ids)
        assert await store.last_ids(ids + ["never"]) == {**{e: 1 for e in ids}, "never": 0}
        assert [await store.count_members(e) for e in ids] == [1] * len(ids)

        # One host loses its data: only its executions move to a new epoch.
        lost = servers[1]
        lost.client().flushall()
        await store.last_ids(ids)  # notices the missing marker, writes a new epoch
        assert int(lost.client().get("sh:epoch")) > 0
        assert servers[0].client().get("sh:epoch") == b"0"
        for execution_id in ids:
            event_id = await store.append(execution_id, "step", "2")
            assert (event_id > 1_000_000) == (store.host_of(execution_id) == 1)

        # Leases live on each execution's host; claiming asks every host.
        for execution_id in ids:
            await store.hold_lease(execution_id, 0.001)
        time.sleep(0.01)
        claimed = await store.claim_expired_leases(0.5, limit=100)
        assert sorted(claimed) == sorted(ids)
        assert await store.claim_expired_leases(0.5) == []
    finally:
        await store.aclose()


async def test_wait_for_a_replica(make_private_redis, caplog):
    master = make_private_redis()
    replica = make_private_redis(["--replicaof", "127.0.0.1", str(master.port)])
    master.wait_for_replicas(1)
    # 2 s: a replica starved of CPU on a loaded machine acknowledged later than 300 ms.
    settings = {"REDIS_WAIT_REPLICAS": 1, "REDIS_WAIT_TIMEOUT": 2}
    with override_settings(SSE_EXEC=settings):
        store = RedisStore(url=master.url, prefix=f"w{uuid.uuid4().hex[:6]}")
    try:
        assert store.replica_acks == (1, 2000)
        assert await store.append("e", "step", "1") == 1
        assert store.append_blocking("e", "step", "2") == 2
        assert replica.client().get(f"{store.prefix}:{{e}}:last") == b"2"  # before returning
        assert store.close_blocking("e") == (3, True)
        replica.stop()
        with caplog.at_level(logging.WARNING, logger="django_sse_exec"):
            started = time.monotonic()
            assert await store.append("f", "step", "1") == 1  # written, but unacknowledged
            assert store.append_blocking("f", "step", "2") == 2
            assert 3.5 <= time.monotonic() - started < 10  # two writes, 2 s each
        assert "0 of 1 replicas acknowledged" in caplog.text
    finally:
        await store.aclose()


async def test_rule_is_checked_against_live_layers():
    """The gate of the fused delivery compares the reproduced rule with the layer's own
    choice (layer instances only: no connection is made)."""
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer

    from django_sse_exec.layer.redis.shards import rule_matches

    hosts = ["redis://a:1/0", "redis://b:1/0", "redis://c:1/0"]
    groups = [f"sse_exec.run-{n}" for n in range(200)]
    pubsub = RedisPubSubChannelLayer(hosts=hosts, prefix="p")
    core = RedisChannelLayer(hosts=hosts, prefix="p")
    assert rule_matches(pubsub, "pubsub", "p", groups)
    assert rule_matches(core, "core", "p", groups)
    assert not rule_matches(pubsub, "pubsub", "other", groups)  # another prefix, other hosts
    assert not rule_matches(pubsub, "core", "p", groups)
    assert not rule_matches(object(), "pubsub", "p", groups)
