"""Several processes on one Redis: two daphne servers and a separate sender process.

Each test runs real daphne subprocesses with a channels_redis layer (core
``RedisChannelLayer`` and ``RedisPubSubChannelLayer``) and the Redis store, and a
sender process that uses only the public sync helpers, as a Celery worker would.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import wait_count
from tests.loadclient import Swarm, tally
from tests.server import Server
from tests.sse import SSEClient
from tests.workers import delete_keys, redis_env, run_sender

pytestmark = pytest.mark.asyncio

LAYERS = ["redis", "pubsub"]


@pytest.fixture
def redis_setup(requires_redis: str) -> Iterator[Callable[..., dict[str, str]]]:
    """``redis_setup(layer, **env)`` -> server/sender environment; keys deleted afterwards."""
    prefixes: list[str] = []

    def make(layer: str, **extra: str) -> dict[str, str]:
        env = redis_env(requires_redis, layer, **extra)
        prefixes.append(env["TEST_KEY_PREFIX"])
        return env

    yield make
    for prefix in prefixes:
        delete_keys(requires_redis, prefix)


async def connect_all(clients: list[SSEClient]) -> None:
    for client in clients:
        await client.connect()
        await client.read_chunk()  # the preamble: the stream is subscribed


def assert_clean(*servers: Server) -> None:
    """No server logged an error (a broken publish would be hidden by gap repair)."""
    for srv in servers:
        assert "Traceback" not in srv.log(), srv.log()[-3000:]


def assert_complete(events: list, sent: int) -> None:
    """Every event 1..sent in order, then stream-closed with id sent+1."""
    assert [e.int_id for e in events] == list(range(1, sent + 2))
    assert [e.json["n"] for e in events[:-1]] == list(range(sent))
    assert events[-1].event == "stream-closed"
    assert events[-1].json["lastEventId"] == sent + 1


@pytest.mark.parametrize("layer", LAYERS)
async def test_sender_process_reaches_both_servers_counts_and_closes(
        layer, redis_setup, make_server, url_for, execution_id):
    env = redis_setup(layer)
    a = make_server("daphne", env=env)
    b = make_server("daphne", env=env)
    clients = [SSEClient(url_for(srv, execution_id)) for srv in (a, a, b, b)]
    try:
        await connect_all(clients)
        await wait_count(a, execution_id, 4)
        result = await asyncio.to_thread(run_sender, env, f"""
            ids = [sse.send_sse_event({execution_id!r}, "step", {{"n": i}}) for i in range(60)]
            count = sse.get_sse_client_count({execution_id!r})
            closed = sse.close_sse_connections({execution_id!r})
            emit({{"ids": ids, "count": count, "closed": closed}})
        """)
        assert result["ids"] == list(range(1, 61))
        assert result["count"] == 4  # streams of both servers, counted from a third process
        assert result["closed"] == 61
        ends = await asyncio.gather(*(c.read_until_closed(timeout=30) for c in clients))
        for events in ends:
            assert_complete(events, 60)
        await wait_count(a, execution_id, 0)
        for srv in (a, b):
            stats = await asyncio.to_thread(srv.hub)
            assert (stats["streams"], stats["groups"]) == (0, 0)
        assert_clean(a, b)
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize("layer", LAYERS)
async def test_sync_sends_from_many_threads_keep_each_threads_order(
        layer, redis_setup, make_server, url_for, execution_id):
    env = redis_setup(layer)
    srv = make_server("daphne", env=env)
    async with SSEClient(url_for(srv, execution_id)) as client:
        await client.read_chunk()
        result = await asyncio.to_thread(run_sender, env, f"""
            import threading
            ids = {{}}
            def work(t):
                ids[t] = [sse.send_sse_event({execution_id!r}, "step", {{"t": t, "i": i}})
                          for i in range(100)]
            threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
            for th in threads: th.start()
            for th in threads: th.join()
            sse.close_sse_connections({execution_id!r})
            emit(ids)
        """)
        events = await client.read_until_closed(timeout=60)
    assert sorted(i for ids in result.values() for i in ids) == list(range(1, 801))
    assert [e.int_id for e in events] == list(range(1, 802))
    for t in range(8):
        mine = [e for e in events[:-1] if e.json["t"] == t]
        assert [e.json["i"] for e in mine] == list(range(100))
        assert [e.int_id for e in mine] == result[str(t)]
    assert_clean(srv)


async def test_burst_past_layer_capacity_loses_nothing(redis_setup, make_server, url_for,
                                                       execution_id):
    """Core layer with capacity 10: the channel drops most of a 1000-event burst;
    the streams repair every gap (and a dropped tail) from the Redis log."""
    env = redis_setup("redis", TEST_LAYER_CAPACITY="10")
    a = make_server("daphne", env=env)
    b = make_server("daphne", env=env)
    clients = [SSEClient(url_for(srv, execution_id)) for srv in (a, b)]
    try:
        await connect_all(clients)
        await wait_count(a, execution_id, 2)
        await asyncio.to_thread(run_sender, env, f"""
            for i in range(1000):
                sse.send_sse_event({execution_id!r}, "step", {{"n": i}})
            sse.close_sse_connections({execution_id!r})
        """)
        ends = await asyncio.gather(*(c.read_until_closed(timeout=60) for c in clients))
        for events in ends:
            assert_complete(events, 1000)
        assert_clean(a, b)
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize("layer", LAYERS)
async def test_count_recovers_after_kill_9(layer, redis_setup, make_server, url_for,
                                           execution_id):
    """A killed server's streams stop being counted within 3 heartbeats."""
    heartbeat = 1.0
    env = redis_setup(layer)
    a = make_server("daphne", env=env, sse_exec={"HEARTBEAT": heartbeat})
    b = make_server("daphne", env=env, sse_exec={"HEARTBEAT": heartbeat})
    survivor = SSEClient(url_for(a, execution_id))
    doomed = [SSEClient(url_for(b, execution_id)) for _ in range(2)]
    try:
        await connect_all([survivor, *doomed])
        await wait_count(a, execution_id, 3)
        # Past one member TTL: heartbeats keep the entries alive.
        await asyncio.sleep(3 * heartbeat + 1)
        assert await asyncio.to_thread(a.count, execution_id) == 3
        b.stop(signal.SIGKILL)
        took = await wait_count(a, execution_id, 1, timeout=3 * heartbeat + 5)
        assert took <= 3 * heartbeat + 2
        await asyncio.to_thread(a.send, execution_id, ("step", {"n": 0}))
        events = await survivor.wait_for(lambda ev: len(ev) >= 1)
        assert events[0].json == {"n": 0}
    finally:
        for client in (survivor, *doomed):
            await client.close()


async def test_idle_stream_on_core_layer_outlives_redis_read_timeout(
        redis_setup, make_server, url_for, execution_id):
    """redis-py 8 reads time out after 5 s by default; the core layer's idle blocking
    pop is 5 s. With the hosts' socket_timeout raised the hub's receive survives idling."""
    env = redis_setup("redis")
    srv = make_server("daphne", env=env)
    async with SSEClient(url_for(srv, execution_id)) as client:
        await client.read_chunk()
        await asyncio.sleep(7)
        await asyncio.to_thread(run_sender, env, f"""
            sse.send_sse_event({execution_id!r}, "late", {{"n": 0}})
        """)
        events = await client.wait_for(lambda ev: len(ev) >= 1, timeout=10)
    assert events[0].event == "late"
    assert_clean(srv)


async def test_hundreds_of_streams_on_two_servers_core_layer(redis_setup, make_server,
                                                             execution_id):
    """300 streams connecting at once: no HTTP 500 from exhausted Redis pools
    (one hub channel per process; the store's pool waits instead of failing)."""
    from django_sse_exec import stream_url

    env = redis_setup("redis")
    servers = [make_server("daphne", env=env) for _ in range(2)]
    urls = [srv.base_url + stream_url(execution_id) for srv in servers for _ in range(150)]
    async with Swarm(urls, connect_timeout=60) as swarm:
        clients = swarm.clients
        assert {c.connects[0].status for c in clients} == {200}
        await wait_count(servers[0], execution_id, 300, timeout=30)
        result = await asyncio.to_thread(run_sender, env, f"""
            count = sse.get_sse_client_count({execution_id!r})
            for i in range(20):
                sse.send_sse_event({execution_id!r}, "step", {{"n": i}})
            sse.close_sse_connections({execution_id!r})
            emit(count)
        """)
        assert result == 300
        await asyncio.wait_for(asyncio.gather(*swarm.tasks), 60)
        outcome = tally(clients, range(1, 22))
        assert (outcome.lost, outcome.duplicated, outcome.out_of_order) == (0, 0, 0)
    assert_clean(*servers)


async def test_streams_outlive_the_core_layers_group_expiry(redis_setup, make_server, url_for,
                                                            execution_id):
    """Group memberships expire after ``group_expiry``; the hub re-joins every
    GROUP_REFRESH seconds, so a stream older than the expiry stays in the group."""
    import redis

    env = redis_setup("redis", TEST_GROUP_EXPIRY="2")
    prefix = env["TEST_KEY_PREFIX"]
    srv = make_server("daphne", env=env, sse_exec={"GROUP_REFRESH": 0.5,
                                                   "REPAIR_INTERVAL": 0.5})
    raw = redis.Redis.from_url(env["REDIS_URL"])
    async with SSEClient(url_for(srv, execution_id)) as client:
        await client.read_chunk()
        await asyncio.sleep(4)  # twice the group expiry
        [(_, joined)] = raw.zrange(f"asgi_{prefix}:group:{prefix}.{execution_id}", 0, -1,
                                   withscores=True)
        assert time.time() - joined < 2
        await asyncio.to_thread(run_sender, env, f"""
            sse.send_sse_event({execution_id!r}, "late", {{"n": 0}})
        """)
        events = await client.wait_for(lambda ev: len(ev) >= 1, timeout=20)
    raw.close()
    assert events[0].event == "late"
    assert_clean(srv)


@pytest.mark.parametrize("layer", LAYERS)
async def test_sender_gets_a_clear_error_quickly_when_redis_is_down(layer):
    env = redis_env("redis://127.0.0.1:1/0", layer)
    result = await asyncio.to_thread(run_sender, env, """
        import time
        from django_sse_exec.exceptions import StoreUnavailable
        started = time.monotonic()
        try:
            sse.send_sse_event("e-1", "step", {"n": 1})
        except StoreUnavailable as exc:
            emit({"error": str(exc), "seconds": time.monotonic() - started})
    """)
    assert "127.0.0.1:1" in result["error"] and "unavailable" in result["error"]
    assert result["seconds"] < 10
