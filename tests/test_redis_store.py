"""The Redis store against the real Redis: ids, history, TTLs, membership, failures,
and the sync-send paths that publish on the real channels_redis layers."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from django.test import override_settings

from django_sse_exec.exceptions import ExecutionClosed, StoreUnavailable
from django_sse_exec.store import get_store
from django_sse_exec.store.redis import RedisStore, layer_redis_url, redis_url_from_settings
from tests.helpers import wait_until
from tests.workers import delete_keys


@pytest.fixture
def prefix(requires_redis: str) -> Iterator[str]:
    value = f"t{uuid.uuid4().hex[:10]}"
    yield value
    delete_keys(requires_redis, value)


@pytest.fixture
def raw(requires_redis: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(requires_redis, decode_responses=True)
    yield client
    client.close()


def make_store(url: str, prefix: str, **options: float) -> RedisStore:
    defaults = {"history_max_events": 5, "history_ttl": 60, "closed_ttl": 30, "member_ttl": 30}
    return RedisStore(url=url, prefix=prefix, **{**defaults, **options})


@pytest.fixture
async def store(requires_redis: str, prefix: str) -> AsyncIterator[RedisStore]:
    value = make_store(requires_redis, prefix)
    yield value
    await value.aclose()


# -- event log ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_ids_are_contiguous_and_history_is_trimmed(store):
    ids = [await store.append("e", "step", f'{{"n":{i}}}') for i in range(12)]
    assert ids == list(range(1, 13))
    log = await store.read("e")
    assert [e.id for e in log.events] == [8, 9, 10, 11, 12]
    assert (log.last_id, log.first_id, log.closed) == (12, 8, False)
    assert log.events[0].data == '{"n":7}' and log.events[0].event == "step"
    assert [e.id for e in (await store.read("e", after=9, upto=11)).events] == [10, 11]
    assert [e.id for e in (await store.read("e", after=2)).events] == [8, 9, 10, 11, 12]
    assert (await store.read("e", upto=0)).events == []
    assert (await store.read("e", after=12)).events == []
    empty = await store.read("never")
    assert (empty.events, empty.last_id, empty.first_id, empty.closed) == ([], 0, 1, False)


@pytest.mark.asyncio
async def test_data_with_any_text_survives(store):
    text = '{"s":"line\\nbreak é 漢字 \\u0000","k":[1,2]}'
    await store.append("e", "a:b.c_d-e", text)
    [event] = (await store.read("e")).events
    assert (event.event, event.data) == ("a:b.c_d-e", text)


@pytest.mark.asyncio
async def test_close_is_idempotent_and_final(store):
    await store.append("e", "step", "1")
    assert await store.close("e") == (2, True)
    assert await store.close("e") == (2, False)
    assert store.close_blocking("e") == (2, False)
    with pytest.raises(ExecutionClosed):
        await store.append("e", "step", "2")
    with pytest.raises(ExecutionClosed):
        store.append_blocking("e", "step", "2")
    log = await store.read("e")
    assert log.closed and log.last_id == 2
    assert log.events[-1] == store.closed_event("e", 2)


@pytest.mark.asyncio
async def test_keys_carry_the_prefix_and_expire(store, raw, prefix):
    await store.append("e", "step", "1")
    await store.add_member("e", "m")
    keys = sorted(raw.scan_iter(f"{prefix}:*"))
    assert keys == [f"{prefix}:epoch"] + [
        f"{prefix}:{{e}}:{part}" for part in ("bytes", "events", "last", "members")]
    assert raw.ttl(f"{prefix}:epoch") == -1  # the store's incarnation marker stays
    assert all(0 < raw.ttl(k) <= 60 for k in keys if ":{e}:" in k and not k.endswith("members"))
    assert 0 < raw.pttl(f"{prefix}:{{e}}:members") <= 30_000
    await store.close("e")
    for part in ("events", "last", "closed", "bytes"):
        assert 0 < raw.ttl(f"{prefix}:{{e}}:{part}") <= 30


@pytest.mark.asyncio
async def test_history_expires_after_its_ttl(requires_redis, prefix):
    store = make_store(requires_redis, prefix, history_ttl=1)
    await store.append("e", "step", "1")

    async def gone() -> bool:
        return (await store.read("e")).last_id == 0

    await wait_until(gone, timeout=5)
    assert await store.append("e", "step", "again") == 1  # a fresh log
    await store.aclose()


@pytest.mark.asyncio
async def test_last_ids_in_one_call(store):
    for _ in range(3):
        await store.append("a", "step", "1")
    await store.append("b", "step", "1")
    assert await store.last_ids(["a", "b", "c"]) == {"a": 3, "b": 1, "c": 0}
    assert await store.last_ids([]) == {}


def _append_many(url: str, prefix: str, count: int, queue) -> None:
    store = make_store(url, prefix)
    queue.put([store.append_blocking("shared", "step", "1") for _ in range(count)])


@pytest.mark.asyncio
async def test_ids_are_atomic_across_threads_and_processes(store, requires_redis, prefix):
    results: list[list[int]] = []

    def work() -> None:
        results.append([store.append_blocking("shared", "step", "1") for _ in range(100)])

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_append_many, args=(requires_redis, prefix, 100, queue))
             for _ in range(3)]
    for proc in procs:
        proc.start()
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    concurrent = list(await asyncio.gather(
        *(store.append("shared", "step", "1") for _ in range(100))))
    for thread in threads:
        await asyncio.to_thread(thread.join)
    for _ in procs:
        results.append(await asyncio.to_thread(queue.get, True, 60))
    for proc in procs:
        await asyncio.to_thread(proc.join, 30)
    assert sorted(i for ids in [*results, concurrent] for i in ids) == list(range(1, 801))
    for ids in results:
        assert ids == sorted(ids)  # each sequential sender sees its own ids increase


# -- membership -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_members_count_and_leave_no_empty_entry(store, raw, prefix):
    await store.add_member("e", "m1")
    await store.add_member("e", "m2")
    await store.add_member("e", "m2")
    assert await store.count_members("e") == 2
    await store.remove_member("e", "m1")
    assert await store.count_members("e") == 1
    await store.remove_member("e", "m2")
    await store.remove_member("e", "m2")
    assert await store.count_members("e") == 0
    assert raw.exists(f"{prefix}:{{e}}:members") == 0
    await store.refresh_members([("e", "m1")])  # a removed member is not brought back
    assert await store.count_members("e") == 0
    assert raw.exists(f"{prefix}:{{e}}:members") == 0


@pytest.mark.asyncio
async def test_concurrent_membership_writes_share_round_trips(store, monkeypatch):
    from redis.asyncio.connection import AbstractConnection

    sends = 0
    send = AbstractConnection.send_packed_command

    async def counting_send(self, *args, **kwargs):
        nonlocal sends
        sends += 1
        return await send(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting_send)
    await asyncio.gather(*(store.add_member(f"e{i % 4}", f"m{i}") for i in range(200)))
    # One write per round trip would be 200 sends; batched it is a few (plus, once,
    # loading the script: NOSCRIPT, SCRIPT LOAD, resend).
    assert sends <= 10, sends
    assert [await store.count_members(f"e{k}") for k in range(4)] == [50, 50, 50, 50]

    # Removes and adds of the same tick keep their call order.
    sends = 0
    await asyncio.gather(*(store.remove_member(f"e{i % 4}", f"m{i}") for i in range(0, 200, 2)),
                         store.add_member("e0", "late"), store.remove_member("e0", "late"),
                         store.add_member("e1", "late"))
    assert sends <= 3, sends
    assert [await store.count_members(f"e{k}") for k in range(4)] == [0, 51, 0, 50]


@pytest.mark.asyncio
async def test_each_batched_writer_gets_its_own_store_unavailable():
    store = RedisStore(url="redis://127.0.0.1:1/0", prefix="unreachable")
    errors = await asyncio.gather(*(store.add_member("e", f"m{i}") for i in range(3)),
                                  store.remove_member("e", "m0"), return_exceptions=True)
    assert all(isinstance(e, StoreUnavailable) for e in errors), errors
    assert len({id(e) for e in errors}) == 4
    await store.aclose()


@pytest.mark.asyncio
async def test_members_expire_when_the_heartbeat_stops(requires_redis, prefix, raw):
    store = make_store(requires_redis, prefix, member_ttl=1)
    await store.add_member("e", "beating")
    await store.add_member("e", "dead")
    for _ in range(4):  # 2 s: past the TTL, kept alive by refreshes
        await asyncio.sleep(0.5)
        await store.refresh_members([("e", "beating")])
    assert await store.count_members("e") == 1

    async def none_left() -> bool:
        return await store.count_members("e") == 0

    started = time.monotonic()
    await wait_until(none_left, timeout=5)
    assert time.monotonic() - started < 3  # the TTL (1 s) plus slack for a loaded machine
    assert raw.exists(f"{prefix}:{{e}}:members") == 0
    await store.aclose()


# -- configuration and failures -------------------------------------------------------


@pytest.mark.asyncio
async def test_unreachable_redis_raises_store_unavailable_quickly():
    store = RedisStore(url="redis://127.0.0.1:1/0", prefix="unreachable")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="127.0.0.1:1"):
        await store.append("e", "step", "1")
    with pytest.raises(StoreUnavailable):
        store.append_blocking("e", "step", "1")
    with pytest.raises(StoreUnavailable):
        await store.count_members("e")
    assert time.monotonic() - started < 10
    await store.aclose()


def _layers(host: object) -> dict:
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                        "CONFIG": {"hosts": [host]}}}


def test_redis_url_comes_from_settings_or_the_layer():
    with override_settings(CHANNEL_LAYERS=_layers("redis://h1:6380/2"), SSE_EXEC={}):
        assert redis_url_from_settings() == "redis://h1:6380/2"
    with override_settings(CHANNEL_LAYERS=_layers({"address": "redis://h2:1/3",
                                                   "socket_timeout": 30}), SSE_EXEC={}):
        assert redis_url_from_settings() == "redis://h2:1/3"
    with override_settings(CHANNEL_LAYERS=_layers(("h3", 6379)), SSE_EXEC={}):
        assert layer_redis_url() == "redis://h3:6379/0"
    with override_settings(CHANNEL_LAYERS=_layers("redis://h1:6380/2"),
                           SSE_EXEC={"REDIS_URL": "redis://other:1/0"}):
        assert redis_url_from_settings() == "redis://other:1/0"
        assert RedisStore().shares_layer_redis is False
    with override_settings(CHANNEL_LAYERS=_layers("redis://h1:6380/2"), SSE_EXEC={}):
        assert RedisStore().shares_layer_redis is True


def test_auto_store_follows_the_layer():
    with override_settings(CHANNEL_LAYERS=_layers("redis://127.0.0.1:6379/0"), SSE_EXEC={}):
        assert isinstance(get_store(), RedisStore)
    with override_settings(CHANNEL_LAYERS={"default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer"}}, SSE_EXEC={}):
        assert not isinstance(get_store(), RedisStore)


# -- sync sends on the real layers ---------------------------------------------------------


def _layer_settings(url: str, layer: str, prefix: str) -> dict:
    backend = {"redis": "channels_redis.core.RedisChannelLayer",
               "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer"}[layer]
    config = {"hosts": [{"address": url, "socket_timeout": 30}], "prefix": f"asgi_{prefix}"}
    if layer == "redis":
        config["capacity"] = 10_000
    return {"CHANNEL_LAYERS": {"default": {"BACKEND": backend, "CONFIG": config}},
            "SSE_EXEC": {"KEY_PREFIX": prefix}}


def _own_redis_clients(client: redis.Redis) -> int:
    import psutil

    client.ping()  # this client's own connection exists before the sockets are listed
    ports = {c.laddr.port for c in psutil.Process().net_connections("tcp") if c.raddr}
    return sum(1 for c in client.client_list() if int(c["addr"].rsplit(":", 1)[1]) in ports)


@pytest.mark.parametrize("layer", ["redis", "pubsub"])
@pytest.mark.asyncio
async def test_sync_sends_from_threads_reach_a_layer_consumer_in_order(
        layer, requires_redis, prefix, raw):
    """What a registered consumer receives from 8 threads of sync sends: every id once,
    each thread's events in its order; and no Redis connections leak."""
    import django_sse_exec as sse
    from django_sse_exec.layer.access import get_layer
    from django_sse_exec.layer.names import group_name
    from django_sse_exec.sending.publisher import publisher

    with override_settings(**_layer_settings(requires_redis, layer, prefix)):
        channel_layer = get_layer()
        channel = await channel_layer.new_channel()
        await channel_layer.group_add(group_name("e"), channel)
        received: list[dict] = []

        async def receive(count: int) -> None:
            while len(received) < count:
                received.append(await channel_layer.receive(channel))

        def work(t: int, count: int) -> None:
            for i in range(count):
                sse.send_sse_event("e", "step", {"t": t, "i": i})

        counts = []
        for start in (0, 8):  # the first round opens the connections 8 threads need
            listener = asyncio.create_task(receive(len(received) + 8 * 250))
            await asyncio.gather(*(asyncio.to_thread(work, t, 250)
                                   for t in range(start, start + 8)))
            await asyncio.wait_for(listener, 60)
            await asyncio.to_thread(publisher().flush)
            counts.append(_own_redis_clients(raw))
        assert counts[1] <= counts[0], counts  # 2000 more sends, no more connections
        await channel_layer.group_discard(group_name("e"), channel)
        if layer == "pubsub":  # close its connections on this test's loop
            await channel_layer.flush()
        await get_store().aclose()
    assert sorted(m["id"] for m in received) == list(range(1, 4001))
    assert all(m["type"] == "sse_exec.event" and m["execution_id"] == "e" for m in received)
    for t in range(16):
        mine = [json.loads(m["data"])["i"] for m in received if json.loads(m["data"])["t"] == t]
        assert mine == list(range(250))


@pytest.mark.asyncio
@pytest.mark.parametrize("layer", ["redis", "pubsub"])
async def test_one_script_logs_and_delivers_what_the_layer_reads(layer, requires_redis, prefix):
    """Redis splices the id into bytes the layer serialised (and, on the core layer,
    adds the channel list): the layer must read exactly the message its own
    group_send would have carried, on every member channel."""
    from django_sse_exec.layer.access import get_layer
    from django_sse_exec.layer.names import group_name
    from django_sse_exec.layer.redis.fused import fusable_kind
    from django_sse_exec.sending.delivery import Fused, message

    with override_settings(**_layer_settings(requires_redis, layer, prefix)):
        channel_layer = get_layer()
        store = get_store()
        kind = fusable_kind(channel_layer)
        assert kind == ("core" if layer == "redis" else "pubsub")
        fused = Fused(store, channel_layer, kind)
        channels = [await channel_layer.new_channel() for _ in range(2)]
        for channel in channels:
            await channel_layer.group_add(group_name("e"), channel)
        sent = []
        for _ in range(3):
            got = await asyncio.to_thread(fused.send_blocking, "e", "step", '{"x":"é"}')
            sent.append(message("e", got, "step", '{"x":"é"}'))
        sent_at = [m.pop("t") for m in sent]
        for channel in channels:
            received = [await asyncio.wait_for(channel_layer.receive(channel), 5) for _ in sent]
            # (the core layer hands one dict to every local channel: copy before changing it)
            received = [dict(got) for got in received]
            for got, at in zip(received, sent_at):
                assert abs(got.pop("t") - at) < 5  # stamped by Redis's clock
            assert received == sent
        assert [e.id for e in (await store.read("e")).events] == [1, 2, 3]
        for channel in channels:
            await channel_layer.group_discard(group_name("e"), channel)
        if layer == "pubsub":
            await channel_layer.flush()
        await store.aclose()


@pytest.mark.asyncio
async def test_core_delivery_respects_capacity_and_group_expiry(requires_redis, prefix, raw):
    from django_sse_exec.layer.access import get_layer
    from django_sse_exec.layer.names import group_name
    from django_sse_exec.sending.delivery import Fused

    settings = _layer_settings(requires_redis, "redis", prefix)
    settings["CHANNEL_LAYERS"]["default"]["CONFIG"].update(capacity=3, group_expiry=1)
    with override_settings(**settings):
        channel_layer = get_layer()
        store = get_store()
        channel = await channel_layer.new_channel()
        await channel_layer.group_add(group_name("e"), channel)
        plan = Fused(store, channel_layer, "core").plan("e", "step", "1")
        for _ in range(5):
            store.append_blocking("e", "step", "1", plan)
        key = channel_layer.prefix + channel_layer.non_local_name(channel)
        assert raw.zcard(key) == 3  # capacity: the rest were dropped, as group_send does
        await asyncio.sleep(2.1)  # the membership is now older than group_expiry
        store.append_blocking("e", "step", "1", plan)
        assert raw.zcard(channel_layer._group_key(group_name("e")).decode()) == 0
        assert raw.zcard(key) == 3
        await store.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("layer", ["redis", "pubsub"])
async def test_concurrent_async_sends_are_delivered_in_id_order(layer, requires_redis, prefix):
    """The async helper logs and delivers in one script too, so even concurrent
    sends reach a consumer in id order (a separate group_send reorders them)."""
    import django_sse_exec as sse
    from django_sse_exec.layer.access import get_layer
    from django_sse_exec.layer.names import group_name

    with override_settings(**_layer_settings(requires_redis, layer, prefix)):
        channel_layer = get_layer()
        channel = await channel_layer.new_channel()
        await channel_layer.group_add(group_name("e"), channel)
        ids = await asyncio.gather(*(sse.asend_sse_event("e", "step", {"i": i})
                                     for i in range(300)))
        received = [await asyncio.wait_for(channel_layer.receive(channel), 10)
                    for _ in range(300)]
        await channel_layer.group_discard(group_name("e"), channel)
        if layer == "pubsub":
            await channel_layer.flush()
        await get_store().aclose()
    assert sorted(ids) == list(range(1, 301))
    assert [m["id"] for m in received] == list(range(1, 301))


@pytest.mark.asyncio
async def test_more_threads_than_connections_wait_for_one(requires_redis, prefix):
    store = make_store(requires_redis, prefix)
    store.MAX_CONNECTIONS = 4
    errors: list[BaseException] = []
    results: list[int] = []

    def work() -> None:
        try:
            results.extend(store.append_blocking("e", "step", "1") for _ in range(50))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        await asyncio.to_thread(thread.join)
    assert errors == []
    assert sorted(results) == list(range(1, 801))
    await store.aclose()
