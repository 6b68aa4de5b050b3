"""A real Celery worker (Redis broker, prefork pool) reports an execution that a
browser-like client streams from daphne; and the system checks that catch
multi-process setups that would lose events (Celery with the in-memory layer, a
memory store with a Redis layer, redis-py 8's read timeout on the core layer)."""

from __future__ import annotations

import asyncio

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from tests.sse import SSEClient
from tests.workers import CeleryWorker, delete_keys, redis_env

VOCABULARY_SEQUENCE = ["execution-start",
                  "task-start", "task-complete",
                  "task-start", "task-fail",
                  "task-start", "task-complete",
                  "execution-complete", "stream-closed"]


@pytest.mark.asyncio
@pytest.mark.parametrize("layer", ["redis", "pubsub"])
async def test_celery_task_progress_streams_to_the_browser(layer, requires_redis, make_server,
                                                           url_for, execution_id):
    env = redis_env(requires_redis, layer)
    try:
        srv = make_server("daphne", env=env)
        worker = await asyncio.to_thread(
            CeleryWorker(requires_redis, env=env, result_backend=True).start)
        try:
            async with SSEClient(url_for(srv, execution_id)) as client:
                await client.read_chunk()
                result = worker.send_task("demo.run_execution", args=[execution_id],
                                          kwargs={"tasks": 3, "delay_ms": 50, "fail_at": 2})
                events = await client.read_until_closed(timeout=60)
                summary = await asyncio.to_thread(result.get, timeout=30)
        finally:
            await asyncio.to_thread(worker.stop)
        assert [e.event for e in events] == VOCABULARY_SEQUENCE, worker.log()[-3000:]
        assert [e.int_id for e in events] == list(range(1, len(VOCABULARY_SEQUENCE) + 1))
        assert events[1].json == {"taskId": "task-1", "taskTitle": "Task 1", "progress": 0,
                                  "total": 3}
        assert events[4].json["error"] == "Task 2 failed (simulated)"
        complete = events[-2].json
        assert summary == {"successful": 2, "failed": 1}
        assert (complete["status"], complete["successful"], complete["failed"]) == ("failed", 2, 1)
        assert events[-1].json == {"executionId": execution_id, "lastEventId": 9}
        # A reload after the end replays the whole execution from the Redis log.
        async with SSEClient(url_for(srv, execution_id)) as again:
            replay = await again.read_until_closed(timeout=15)
        assert [e.event for e in replay] == VOCABULARY_SEQUENCE
    finally:
        delete_keys(requires_redis, env["TEST_KEY_PREFIX"])


def _layers_with(host: object) -> dict:
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                        "CONFIG": {"hosts": [host]}}}


MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
REDIS_LAYER = _layers_with("redis://127.0.0.1:6379/0")


def w004(**overrides: object) -> list[str]:
    with override_settings(**overrides):
        return [m.msg + " | " + (m.hint or "") for m in run_checks()
                if m.id == "django_sse_exec.W004"]


def test_check_warns_about_celery_with_the_in_memory_layer():
    [message] = w004(CHANNEL_LAYERS=MEMORY_LAYER, CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    assert "in-memory" in message and "channels_redis" in message
    assert w004(CHANNEL_LAYERS=REDIS_LAYER, CELERY_BROKER_URL="redis://127.0.0.1:6379/0") == []


def test_check_is_quiet_without_celery_settings(settings, monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    from django.conf import settings as django_settings

    for name in [n for n in dir(django_settings) if n.startswith("CELERY")]:
        delattr(settings, name)
    assert w004(CHANNEL_LAYERS=MEMORY_LAYER) == []


def test_check_warns_about_a_memory_store_with_a_redis_layer():
    with override_settings(CHANNEL_LAYERS=REDIS_LAYER, SSE_EXEC={"STORE": "memory"}):
        ids = [m.id for m in run_checks()]
    assert "django_sse_exec.W005" in ids
    with override_settings(CHANNEL_LAYERS=REDIS_LAYER, SSE_EXEC={}):
        assert "django_sse_exec.W005" not in [m.id for m in run_checks()]


def test_check_warns_about_redis_py_8_read_timeouts_on_the_core_layer():
    def w006(host: object) -> bool:
        with override_settings(CHANNEL_LAYERS=_layers_with(host)):
            return "django_sse_exec.W006" in [m.id for m in run_checks()]

    assert w006("redis://127.0.0.1:6379/0")
    assert w006({"address": "redis://127.0.0.1:6379/0"})
    assert not w006({"address": "redis://127.0.0.1:6379/0", "socket_timeout": 30})
    assert not w006({"address": "redis://127.0.0.1:6379/0", "socket_timeout": None})
    with override_settings(CHANNEL_LAYERS={"default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]}}}):
        assert "django_sse_exec.W006" not in [m.id for m in run_checks()]
