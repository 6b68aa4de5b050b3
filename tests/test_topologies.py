"""More than one Redis: three independent hosts, and a Sentinel failover.

Real processes throughout: private redis-servers (and ``redis-sentinel``), two
daphne servers and sender processes using the public sync helpers, on both
channels_redis layers.

* Three hosts in the layer's config: each execution's log, membership and
  group live on one host, the same in every process; executions spread over
  all hosts; every event arrives; counts are right.
* Sentinel: the master is killed mid-run; the sentinels promote a replica;
  sends work again and streams resume within a bounded time, and with
  ``REDIS_WAIT_REPLICAS`` no event whose send returned is lost.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from tests.conftest import require_program
from tests.helpers import PrivateRedis, wait_count, wait_until
from tests.loadclient import StreamClient, Swarm
from tests.topology import SentinelSet, server_env
from tests.workers import run_sender

pytestmark = pytest.mark.asyncio

LAYERS = ["redis", "pubsub"]
#: The deliveries' names (``Delivery.name``): the log's script delivers, or the
#: event is logged and then published through the layer.
FUSED = "one Redis script logs and delivers"
LOGGED_THEN_PUBLISHED = "blocking log, ordered background publishing"
#: Which delivery each layer gets on several hosts: the core layer's member channels
#: live on hosts of their own, out of reach of a script on the log's host.
SHARDED_DELIVERY = {"redis": LOGGED_THEN_PUBLISHED, "pubsub": FUSED}


def holding(hosts: list[PrivateRedis], key: str) -> list[int]:
    """Indexes of the hosts on which ``key`` exists."""
    return [i for i, host in enumerate(hosts) if host.client().exists(key)]


def group_hosts(hosts: list[PrivateRedis], layer: str, prefix: str, execution_id: str) -> list[int]:
    """Indexes of the hosts that hold the execution's channel-layer group (core: its
    sorted set; pub/sub: a subscription to its channel)."""
    group = f"{prefix}.{execution_id}"
    if layer == "redis":
        return holding(hosts, f"asgi_{prefix}:group:{group}")
    channel = f"asgi_{prefix}__group__{group}"
    return [i for i, host in enumerate(hosts)
            if dict(host.client().pubsub_numsub(channel)).get(channel.encode(), 0) > 0]


def executions_per_host(layer: str, prefix: str, hosts: int, each: int) -> dict[str, int]:
    """New execution ids, ``each`` on every host, with the index of their host as
    channels_redis itself computes it for the execution's group."""
    from channels_redis.utils import _consistent_hash

    found: dict[str, int] = {}
    counts = [0] * hosts
    while min(counts) < each:
        execution_id = f"x{uuid.uuid4().hex[:12]}"
        group = f"{prefix}.{execution_id}"
        name = group if layer == "redis" else f"asgi_{prefix}__group__{group}"
        index = _consistent_hash(name, hosts)
        if counts[index] < each:
            counts[index] += 1
            found[execution_id] = index
    return found


def assert_received(client: StreamClient, sent: dict[int, int], closed_id: int) -> None:
    """The client got every ``id -> n`` in ``sent`` with its payload, then stream-closed."""
    by_id = {int(e.id): e for e in client.events if e.id and e.id.isdigit()}
    missing = sorted(set(sent) - set(by_id))
    assert not missing, f"{len(missing)} events never arrived: ids {missing[:20]}"
    wrong = [i for i, n in sent.items() if by_id[i].json.get("n") != n]
    assert not wrong, (
        f"events arrived with another payload: ids {wrong[:20]}; (id, sent n, received n): "
        f"{[(i, sent[i], by_id[i].json.get('n')) for i in wrong[:5]]}; the client's events: "
        f"{[(e.id, e.event, e.data[:40]) for e in client.events][:400]}")
    assert client.events[-1].event == "stream-closed" and int(client.events[-1].id) == closed_id


SHARDED_SENDER = """
from django_sse_exec.sending.delivery import get_delivery
EX = {executions!r}
counts = {{e: sse.get_sse_client_count(e) for e in EX}}
ids = {{e: [sse.send_sse_event(e, "step", {{"n": i}}) for i in range({events})] for e in EX}}
closed = {{e: sse.close_sse_connections(e) for e in EX}}
emit({{"delivery": get_delivery().name, "counts": counts, "ids": ids, "closed": closed}})
"""


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.timeout(180)
async def test_three_hosts_each_execution_on_one_host(layer, make_private_redis, make_server,
                                                      url_for):
    hosts = [make_private_redis() for _ in range(3)]
    env = server_env(layer, urls=[host.url for host in hosts])
    prefix = env["TEST_KEY_PREFIX"]
    servers = [make_server("daphne", env=env), make_server("daphne", env=env)]
    homes = executions_per_host(layer, prefix, 3, 4)
    executions = list(homes)
    events = 30
    urls = [url_for(srv, e) for e in executions for srv in servers]
    async with Swarm(urls, max_retry_ms=200) as swarm:
        # both servers' streams, counted through either server
        await asyncio.gather(*(wait_count(servers[i % 2], e, 2)
                               for i, e in enumerate(executions)))
        for e in executions:  # membership and group on the host channels_redis picks
            assert holding(hosts, f"{prefix}:{{{e}}}:members") == [homes[e]]
            assert group_hosts(hosts, layer, prefix, e) == [homes[e]]

        halves = [executions[::2], executions[1::2]]
        results = await asyncio.gather(*(asyncio.to_thread(
            run_sender, env, SHARDED_SENDER.format(executions=half, events=events))
            for half in halves))
        for result in results:
            assert result["delivery"] == SHARDED_DELIVERY[layer]
            assert set(result["counts"].values()) == {2}
            assert all(ids == list(range(1, events + 1)) for ids in result["ids"].values())
            assert set(result["closed"].values()) == {events + 1}
        await wait_until(lambda: all(c.finished for c in swarm.clients), 60,
                         what="every stream closed")
        for client in swarm.clients:
            assert_received(client, {i + 1: i for i in range(events)}, events + 1)
    for e in executions:  # the log too lives on the execution's host only
        assert holding(hosts, f"{prefix}:{{{e}}}:last") == [homes[e]]
        assert holding(hosts, f"{prefix}:{{{e}}}:events") == [homes[e]]
    for host in hosts:  # each host has its own epoch marker
        assert host.client().exists(f"{prefix}:epoch")
    await wait_count(servers[0], executions[0], 0)
    for srv in servers:
        stats = await asyncio.to_thread(srv.hub)
        assert (stats["streams"], stats["groups"]) == (0, 0)


FAILOVER_SENDER = """
import logging, time
from django_sse_exec.sending.delivery import get_delivery
EX = {executions!r}
sent = {{e: [] for e in EX}}
failures, recovered, n = [], None, 0
# Sends that returned with fewer replicas than asked (the documented "as safe as
# without WAIT" case): their execution and n.
short = []
class Short(logging.Handler):
    def emit(self, record):
        if "replicas acknowledged" in record.getMessage():
            short.append([current, n])
logging.getLogger("django_sse_exec").addHandler(Short(logging.WARNING))
current = None
deadline = time.time() + {seconds}
while time.time() < deadline:
    for e in EX:
        current = e
        while True:
            try:
                sent[e].append([sse.send_sse_event(e, "step", {{"n": n}}), n])
                if failures and recovered is None:
                    recovered = time.time()
                break
            except Exception as exc:
                failures.append([time.time(), repr(exc)[:300]])
                time.sleep(0.05)
    n += 1
    time.sleep(0.05)
closed = {{}}
for e in EX:
    while e not in closed:
        try:
            closed[e] = sse.close_sse_connections(e)
        except Exception:
            time.sleep(0.1)
emit({{"delivery": get_delivery().name, "sent": sent, "closed": closed,
      "failures": len(failures), "short": short,
      "first_failure": failures[0] if failures else None, "recovered": recovered}})
"""


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.timeout(240)
async def test_sentinel_failover_loses_no_returned_send(layer, make_private_redis, make_server,
                                                        url_for, tmp_path):
    require_program("redis-sentinel")
    sentinels = SentinelSet(make_private_redis, tmp_path, replicas=2).start()
    try:
        await _failover_run(layer, sentinels, make_server, url_for)
    finally:
        sentinels.stop()


async def _failover_run(layer: str, sentinels: SentinelSet, make_server: Any,
                        url_for: Any) -> None:
    env = server_env(layer, sentinels=sentinels.ports, SSE_EXEC_JSON=json.dumps(
        {"REDIS_WAIT_REPLICAS": 1, "REDIS_WAIT_TIMEOUT": 0.5, "RETRY_JITTER_MS": 0,
         "RETRY_MS": 200}))
    servers = [make_server("daphne", env=env), make_server("daphne", env=env)]
    executions = [f"f{uuid.uuid4().hex[:12]}" for _ in range(4)]
    urls = [url_for(srv, e) for e in executions for srv in servers]
    old_master = sentinels.master.port
    async with Swarm(urls, max_retry_ms=200) as swarm:
        sender = asyncio.ensure_future(asyncio.to_thread(
            run_sender, env, FAILOVER_SENDER.format(executions=executions, seconds=15), 120))
        await wait_until(lambda: all(len(c.events) >= 10 for c in swarm.clients), 20,
                         what="every stream receiving")
        seen_before = max(max(c.ids) for c in swarm.clients)
        killed_at = time.time()
        sentinels.master.stop()  # SIGKILL
        await asyncio.to_thread(lambda: wait_until_promoted(sentinels, old_master))
        promoted_in = time.time() - killed_at
        await wait_until(
            lambda: all(c.ids and max(c.ids) > seen_before + 4 for c in swarm.clients), 60,
            what="every stream receiving again")
        resumed_in = time.time() - killed_at
        result = await sender
        await wait_until(lambda: all(c.finished for c in swarm.clients), 60,
                         what="every stream closed")
        print(f"\n{layer}: promoted {promoted_in:.1f} s after the kill; sends failed "
              f"{result['failures']} times, worked again {result['recovered'] - killed_at:.1f} s "
              f"after it; every stream received new events {resumed_in:.1f} s after it; "
              f"{len(result['short'])} sends returned under-acknowledged: {result['short'][:10]}")
        # REDIS_WAIT_REPLICAS: published only once a replica has it, so not fused.
        assert result["delivery"] == LOGGED_THEN_PUBLISHED
        assert result["failures"] > 0 and result["recovered"] is not None
        assert result["recovered"] - killed_at < 15 and resumed_in < 20
        # A send that returned with fewer replicas than it waited for is as safe as one
        # without WAIT (documented): its id may be reused, so it is not checked.
        short = {(execution_id, n) for execution_id, n in result["short"]}
        for client, url in zip(swarm.clients, urls):
            execution_id = executions[urls.index(url) // len(servers)]
            unsafe = {event_id for event_id, n in result["sent"][execution_id]
                      if (execution_id, n) in short}
            sent = {event_id: n for event_id, n in result["sent"][execution_id]
                    if event_id not in unsafe}
            assert_received(client, sent, result["closed"][execution_id])


def wait_until_promoted(sentinels: SentinelSet, old_master: int, timeout: float = 30) -> None:
    """Block until the sentinels name another master than ``old_master``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        port = sentinels.master_port()
        if port is not None and port != old_master:
            return
        time.sleep(0.1)
    raise AssertionError("the sentinels did not promote a replica")


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.timeout(120)
async def test_sentinel_master_without_wait_is_fused(layer, make_private_redis, make_server,
                                                     url_for, tmp_path):
    """One Sentinel-managed host and no REDIS_WAIT_REPLICAS: the log's script delivers
    (after the probe passed through the master the sentinels name)."""
    require_program("redis-sentinel")
    sentinels = SentinelSet(make_private_redis, tmp_path).start()
    try:
        env = server_env(layer, sentinels=sentinels.ports)
        srv = make_server("daphne", env=env)
        execution_id = f"s{uuid.uuid4().hex[:12]}"
        async with Swarm([url_for(srv, execution_id)] * 2, max_retry_ms=200) as swarm:
            result = await asyncio.to_thread(run_sender, env, SHARDED_SENDER.format(
                executions=[execution_id], events=20))
            assert result["delivery"] == FUSED
            assert result["counts"] == {execution_id: 2}
            await wait_until(lambda: all(c.finished for c in swarm.clients), 30,
                             what="every stream closed")
            for client in swarm.clients:
                assert_received(client, {i + 1: i for i in range(20)}, 21)
        assert sentinels.master.client().exists(f"{env['TEST_KEY_PREFIX']}:{{{execution_id}}}:last")
    finally:
        sentinels.stop()
