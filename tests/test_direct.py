"""The hub reading Redis pub/sub itself (``layer/redis/direct.py``), and its fallbacks.

Against the real Redis (skipped without one, a failure with SSE_EXEC_REQUIRE_REDIS=1),
on the pub/sub layer: a hub whose probe passed reads its executions' group channels on
a connection of its own, and a consumer that joined the group through the layer still
gets every event; a gate that refuses, or a probe whose message never arrives, leaves
the hub on the layer's ``receive()`` and streams work the same; a connection Redis
drops is re-made and what was sent meanwhile comes from the log. The RESP reader is
checked byte by byte against hiredis's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
import redis
from django.test import override_settings

import django_sse_exec as sse
from django_sse_exec.hub.running import get_hub
from django_sse_exec.layer.access import get_layer
from django_sse_exec.layer.names import group_name
from django_sse_exec.layer.redis import direct, resp
from django_sse_exec.store import get_store
from tests.helpers import wait_until
from tests.test_delivery import layer_settings
from tests.workers import delete_keys


@pytest.fixture
def prefix(requires_redis):
    value = f"x{uuid.uuid4().hex[:10]}"
    yield value
    delete_keys(requires_redis, value)


async def _ids(sub: Any, count: int) -> list[int]:
    """The ids of the first ``count`` events pushed to ``sub``."""
    got: list[int] = []

    async def arrived() -> bool:
        got.extend(entry[0] for batch in sub.take()[0] for entry in batch.events)
        return len(got) >= count

    await wait_until(arrived, 10, what=f"{count} events")
    return got


async def _close(hub: Any) -> None:
    await hub.stop()
    await get_layer().flush()
    await get_store().aclose()


@pytest.mark.asyncio
async def test_the_hub_reads_its_groups_itself_and_the_layer_still_delivers_to_others(requires_redis, prefix):
    with override_settings(**layer_settings(requires_redis, "pubsub", prefix)):
        hub = get_hub()
        sub = await hub.subscribe("e1")
        assert hub.direct is not None  # the probe passed
        layer = get_layer()
        other = await layer.new_channel()  # a consumer registered through the public API
        await sse.aregister_sse_client("e1", other)
        ids = [await sse.asend_sse_event("e1", "step", {"n": n}) for n in range(5)]
        assert await _ids(sub, 5) == ids
        got = [(await asyncio.wait_for(layer.receive(other), 10))["id"] for _ in ids]
        assert got == ids
        await sse.aunregister_sse_client("e1", other)
        await hub.unsubscribe(sub)
        await _close(hub)


@pytest.mark.asyncio
async def test_a_refused_gate_leaves_the_hub_on_the_layer(requires_redis, prefix, monkeypatch):
    monkeypatch.setattr(direct, "version_is_tested", lambda: False)
    with override_settings(**layer_settings(requires_redis, "pubsub", prefix)):
        hub = get_hub()
        sub = await hub.subscribe("e1")
        assert hub.direct is None
        ids = [await sse.asend_sse_event("e1", "step", {"n": n}) for n in range(3)]
        assert await _ids(sub, 3) == ids
        await hub.unsubscribe(sub)
        await _close(hub)


@pytest.mark.asyncio
async def test_a_failed_probe_warns_and_falls_back(requires_redis, prefix, make_private_redis,
                                                   monkeypatch, caplog):
    # The hub's own connection goes to another Redis than the layer publishes on:
    # the probe's message never reaches it.
    elsewhere = make_private_redis()
    real_plan = direct.plan
    monkeypatch.setattr(direct, "plan", lambda layer: [
        {**e, "port": int(elsewhere.url.rsplit(":", 1)[1].split("/")[0])} for e in real_plan(layer)])
    monkeypatch.setattr(direct, "PROBE_TIMEOUT", 0.5)
    with override_settings(**layer_settings(requires_redis, "pubsub", prefix)), \
            caplog.at_level(logging.WARNING, "django_sse_exec"):
        hub = get_hub()
        sub = await hub.subscribe("e1")
        assert hub.direct is None
        assert "failed its probe" in caplog.text
        ids = [await sse.asend_sse_event("e1", "step", {"n": n}) for n in range(3)]
        assert await _ids(sub, 3) == ids
        await hub.unsubscribe(sub)
        await _close(hub)


@pytest.mark.asyncio
async def test_a_dropped_connection_is_remade_and_the_log_fills_the_gap(requires_redis, prefix):
    raw = redis.Redis.from_url(requires_redis)
    with override_settings(**layer_settings(requires_redis, "pubsub", prefix)):
        hub = get_hub()
        sub = await hub.subscribe("e1")
        assert hub.direct is not None
        first = await sse.asend_sse_event("e1", "step", {"n": 0})
        assert await _ids(sub, 1) == [first]
        shard = hub.direct.shards[0]
        host, port = shard.protocol.transport.get_extra_info("sockname")[:2]
        raw.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
        # Sent while the hub's subscription is down or being re-made: from the log.
        missed = [await sse.asend_sse_event("e1", "step", {"n": n}) for n in (1, 2)]
        await wait_until(lambda: shard.ready.done() and shard.protocol is not None, 10,
                         what="the subscription re-made")
        later = await sse.asend_sse_event("e1", "step", {"n": 3})
        assert sorted(set(await _ids(sub, 3))) == [*missed, later]
        assert hub.restore_needed  # memberships are written again by the next maintenance tick
        await hub.unsubscribe(sub)
        await _close(hub)
    raw.close()


@pytest.mark.asyncio
async def test_groups_are_unsubscribed_when_their_last_stream_goes(requires_redis, prefix):
    raw = redis.Redis.from_url(requires_redis)
    with override_settings(**layer_settings(requires_redis, "pubsub", prefix)):
        hub = get_hub()
        subs = await asyncio.gather(*(hub.subscribe(f"g{i}") for i in range(20)))
        channel = f"asgi_{prefix}__group__{group_name('g0')}"
        assert raw.pubsub_numsub(channel) == [(channel.encode(), 1)]
        await asyncio.gather(*(hub.unsubscribe(s) for s in subs))
        await wait_until(lambda: raw.pubsub_numsub(channel) == [(channel.encode(), 0)], 10,
                         what="the group channel unsubscribed")
        await _close(hub)
    raw.close()


def test_hosts_the_hub_cannot_reach_itself_are_left_to_the_layer():
    assert direct.endpoint_of({"address": "redis://:p%40ss@h:6380/2", "socket_timeout": 30}) == {
        "host": "h", "port": 6380, "password": "p@ss", "username": None}
    assert direct.endpoint_of({"address": "unix:///tmp/r.sock"})["path"] == "/tmp/r.sock"
    assert direct.endpoint_of({"address": "rediss://h:6380"}) is None
    assert direct.endpoint_of({"sentinels": [("h", 26379)], "master_name": "m"}) is None
    assert direct.endpoint_of({"host": "h", "ssl": True}) is None


REPLIES = [b"*3\r\n$7\r\nmessage\r\n$5\r\nchan1\r\n$6\r\n\x81\xa1a\r\n\x01\r\n",
           b"*3\r\n$9\r\nsubscribe\r\n$2\r\nc2\r\n:7\r\n", b"+OK\r\n", b"-ERR no such thing\r\n",
           b"*2\r\n$4\r\npong\r\n$0\r\n\r\n", b"$-1\r\n"]


@pytest.mark.parametrize("cut", range(1, sum(map(len, REPLIES))))
def test_the_python_reader_reads_what_hiredis_reads_however_the_bytes_are_cut(cut):
    data = b"".join(REPLIES)
    readers = [resp.PyReader()] + ([resp.hiredis.Reader()] if resp.hiredis is not None else [])
    results = []
    for reader in readers:
        out = []
        for piece in (data[:cut], data[cut:]):
            reader.feed(piece)
            while (reply := reader.gets()) is not False:
                out.append(str(reply) if resp.is_error(reply) else reply)
        results.append(out)
    assert results[0] == [[b"message", b"chan1", b"\x81\xa1a\r\n\x01"], [b"subscribe", b"c2", 7],
                          b"OK", "ERR no such thing", [b"pong", b""], None]
    assert all(r == results[0] for r in results)


def test_the_hub_reads_redis_itself_on_uvloop_too(requires_redis, prefix):
    uvloop = pytest.importorskip("uvloop")

    async def run() -> list[int]:
        with override_settings(**layer_settings(requires_redis, "pubsub", prefix)):
            hub = get_hub()
            sub = await hub.subscribe("e1")
            assert hub.direct is not None
            ids = [await sse.asend_sse_event("e1", "step", {"n": n}) for n in range(3)]
            assert await _ids(sub, 3) == ids
            await hub.unsubscribe(sub)
            await _close(hub)
            return ids

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(run()) == [1, 2, 3]
    finally:
        loop.close()
