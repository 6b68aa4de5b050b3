"""Executions whose producer died end as "lost", exactly once.

In memory (one process) the producer is a task of the server process that holds
a lease and is killed without any cleanup; on Redis it is a separate process
reporting with ``ExecutionReporter``, killed with ``kill -9`` while two web
processes serve the execution's streams. Either way the streams get a
``task-fail`` for the running task, ``execution-complete`` with
``status: "lost"`` and ``stream-closed``, each once, within the lease's bound;
a producer that stays alive keeps its execution open.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.server import ROOT, Server
from tests.sse import SSEClient
from tests.workers import delete_keys, redis_env

pytestmark = pytest.mark.asyncio

FAST_LEASES = {"LEASE_TTL": 1.0, "LEASE_CHECK": 0.2, "REPAIR_INTERVAL": 0.2, "KEEPALIVE": 30}
#: Seconds a loaded machine may add to the documented bound (sending the final events).
SLACK = 3.0


def lost_bound() -> float:
    """The documented bound (``lost_within()``) under :data:`FAST_LEASES`."""
    from django.test import override_settings

    from django_sse_exec.execution.leases import lost_within

    with override_settings(SSE_EXEC=FAST_LEASES):
        return lost_within()


def assert_lost(events: list, task_id: str, ran_at_least: float) -> None:
    """The lost ending, its task's ``duration`` at least ``ran_at_least`` seconds (not 0)."""
    names = [e.event for e in events]
    assert names.count("execution-complete") == 1 and names.count("stream-closed") == 1, names
    assert names[-3:] == ["task-fail", "execution-complete", "stream-closed"], names
    fail, summary = events[-3].json, events[-2].json
    assert fail["taskId"] == task_id and fail["status"] == "failed"
    assert summary["status"] == "lost" and "lease" in summary["error"]
    assert summary["failed"] == 1 and summary["total"] == 2
    assert ran_at_least * 1000 <= fail["duration"] <= summary["totalDuration"], (fail, summary)


async def test_memory_producer_task_killed_without_cleanup_ends_lost(make_server, url_for,
                                                                      execution_id):
    srv = make_server("daphne", sse_exec=FAST_LEASES)
    async with SSEClient(url_for(srv, execution_id)) as client:
        await client.read_chunk()
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=10) as http:
            (await http.post("/control/lease-producer", json={"execution_id": execution_id,
                                                              "ttl": 1.0})).raise_for_status()
            await client.wait_for(lambda events: len(events) == 2)
            reader = asyncio.create_task(client.read_until_closed(timeout=60))
            await asyncio.sleep(3.5)  # alive and renewing: three lease periods pass...
            assert len(client.events) == 2 and not reader.done()  # ...and nothing ends it
            (await http.post("/control/lease-producer-kill",
                             json={"execution_id": execution_id})).raise_for_status()
        killed = time.monotonic()
        events = await reader
        took = time.monotonic() - killed
    assert_lost(events, "t1", ran_at_least=3.5)
    # Bound: the lease's ttl after its last renewal, plus a check interval and a hub tick.
    assert lost_bound() == 1.4 and took < lost_bound() + SLACK, took
    print(f"\nmemory: ended {took:.2f}s after the producer task was killed")


PRODUCER = """
import sys, time, django
django.setup()
from django_sse_exec import ExecutionReporter
with ExecutionReporter(sys.argv[1], total=2) as report:
    report.task_start("t1", "Task one")
    print("READY", flush=True)
    time.sleep(600)
"""


@pytest.mark.timeout(180)
async def test_redis_producer_process_killed_ends_lost_once_across_web_processes(
        requires_redis, url_for, execution_id):
    env = redis_env(requires_redis)
    servers = [Server("daphne", env=env, sse_exec=FAST_LEASES).start() for _ in range(2)]
    producer = None
    clients = [SSEClient(url_for(srv, execution_id)) for srv in servers for _ in range(2)]
    try:
        for client in clients:
            await client.connect()
            await client.read_chunk()
        producer = subprocess.Popen(
            [sys.executable, "-c", PRODUCER, execution_id], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
                 "PYTHONPATH": str(ROOT), "SSE_EXEC_JSON": '{"LEASE_TTL": 1.0}', **env})
        line = await asyncio.to_thread(producer.stdout.readline)
        assert line.strip() == "READY", line + producer.stdout.read()
        for client in clients:
            await client.wait_for(lambda events: len(events) == 2)
        readers = [asyncio.create_task(c.read_until_closed(timeout=60)) for c in clients]
        await asyncio.sleep(3.5)  # alive: its lease is renewed, nothing ends it
        assert [len(c.events) for c in clients] == [2] * len(clients)
        producer.send_signal(signal.SIGKILL)
        producer.wait(10)
        killed = time.monotonic()
        results = await asyncio.gather(*readers)
        took = time.monotonic() - killed
        for events in results:
            assert [e.event for e in events[:2]] == ["execution-start", "task-start"]
            assert_lost(events, "t1", ran_at_least=3.5)
            assert [e.int_id for e in events] == list(range(1, len(events) + 1))
        assert took < lost_bound() + SLACK, took
        # (Each line appears twice in a log: the app's handler, then daphne's root handler.)
        enders = [srv for srv in servers if any(
            line.startswith(f"execution {execution_id} ended as lost")
            for line in srv.log().splitlines())]
        assert len(enders) == 1
        print(f"\nredis: ended {took:.2f}s after kill -9 of the producer; "
              f"one of 2 web processes ended it")
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
        for client in clients:
            await client.close()
        for srv in servers:
            srv.stop()
        delete_keys(requires_redis, env["TEST_KEY_PREFIX"])


async def test_memory_store_hands_an_expired_lease_to_one_caller(execution_id):
    from django_sse_exec.store.memory import MemoryStore

    store = MemoryStore()
    assert await store.hold_lease(execution_id, 0.05)
    assert await store.claim_expired_leases(10) == []
    await asyncio.sleep(0.1)
    assert await store.claim_expired_leases(10) == [execution_id]
    assert await store.claim_expired_leases(10) == []
    await store.append(execution_id, "x", "{}")
    await store.close(execution_id)
    assert not await store.hold_lease(execution_id, 10)  # closed: no lease


async def test_redis_store_hands_an_expired_lease_to_exactly_one_of_many_callers(requires_redis):
    from django_sse_exec.store.redis import RedisStore

    prefix = f"lease{uuid.uuid4().hex[:8]}"
    store = RedisStore(url=requires_redis, prefix=prefix)
    try:
        ids = [f"e{n}" for n in range(20)]
        for execution_id in ids:
            assert await store.hold_lease(execution_id, 0.05)
        await asyncio.sleep(0.2)
        claims = await asyncio.gather(*(store.claim_expired_leases(30, limit=5)
                                        for _ in range(8)))
        claimed = [e for claim in claims for e in claim]
        assert sorted(claimed) == sorted(ids)  # each one exactly once
        assert await store.claim_expired_leases(30) == []
        await store.close("e0")
        assert not await store.hold_lease("e0", 10)
    finally:
        await store.aclose()
        delete_keys(requires_redis, prefix)


async def test_reap_ends_once_and_leaves_closed_or_unknown_executions_alone(execution_id):
    from django_sse_exec import aclose_sse_connections, asend_sse_event
    from django_sse_exec.execution.leases import areap_lost_executions
    from django_sse_exec.store import get_store

    store = get_store()
    closed_id, unknown_id = execution_id + "-closed", execution_id + "-unknown"
    await asend_sse_event(execution_id, "task-start", {"taskId": "a"})
    await asend_sse_event(closed_id, "step", {})
    for eid in (execution_id, closed_id, unknown_id):
        assert await store.hold_lease(eid, 0.01)
    await aclose_sse_connections(closed_id)  # closed with its lease left behind
    await asyncio.sleep(0.05)
    ended = await areap_lost_executions(store)
    assert ended == [execution_id]
    assert await areap_lost_executions(store) == []
    log = await store.read(execution_id)
    assert [e.event for e in log.events] == ["task-start", "task-fail", "execution-complete",
                                             "stream-closed"]
    assert (await store.read(unknown_id)).events == []  # nothing was written for it


@pytest.mark.timeout(240)
async def test_celery_worker_killed_mid_task_ends_lost(requires_redis, execution_id):
    from django_sse_exec import stream_url
    from tests.test_celery_reporting import ReportingWorker, sig, start
    from tests.test_commands import RedisSetup

    setup = RedisSetup(requires_redis, f"tl-{uuid.uuid4().hex[:10]}")
    srv = Server("daphne", env=setup.env, sse_exec=FAST_LEASES).start()
    worker = await asyncio.to_thread(
        ReportingWorker(requires_redis, env=setup.env, sse_exec={"LEASE_TTL": 1.0}).start)
    try:
        with setup.settings():
            async with SSEClient(srv.base_url + stream_url(execution_id)) as client:
                await client.read_chunk()
                await start(sig(worker, "nap", 600), execution_id)
                await client.wait_for(lambda events: len(events) == 2, timeout=60)
                reader = asyncio.create_task(client.read_until_closed(timeout=60))
                await asyncio.sleep(3.5)  # the task runs: its lease is renewed
                assert len(client.events) == 2 and not reader.done()
                os.killpg(worker.proc.pid, signal.SIGKILL)  # the whole worker, as on a lost host
                killed = time.monotonic()
                events = await reader
                took = time.monotonic() - killed
        names = [e.event for e in events]
        assert names == ["execution-start", "task-start", "task-fail", "execution-complete",
                         "stream-closed"], names
        assert events[3].json["status"] == "lost" and events[3].json["failed"] == 1
        assert events[2].json["duration"] >= 3500, events[2].json  # how long it ran, not 0
        assert took < lost_bound() + SLACK, took
        print(f"\ncelery: ended {took:.2f}s after kill -9 of the worker")
    finally:
        await asyncio.to_thread(worker.stop)
        srv.stop()
        delete_keys(requires_redis, setup.prefix)
