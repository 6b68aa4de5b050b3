"""The public helpers in-process: validation at the call site, sync/async twins, the memory store."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.test import override_settings

import django_sse_exec as sse
from django_sse_exec.store.memory import MemoryStore


@pytest.fixture(autouse=True)
def memory_everything(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.SSE_EXEC = {"STORE": "memory"}


@pytest.mark.parametrize("bad", ["", "a" * 65, "white space", "new\nline", "semi;colon", "colon:x",
                                 "slash/x", "star*", "ünï", "nul\0"])
def test_bad_execution_id_raises_value_error(bad):
    with pytest.raises(ValueError, match="invalid execution_id"):
        sse.send_sse_event(bad, "ok", {})


def test_execution_id_must_be_a_string():
    with pytest.raises(TypeError, match="execution_id must be a str"):
        sse.send_sse_event(42, "ok", {})  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "x" * 65, "a\nb", "a\rb", "a\0b", "has space", "stream-closed",
                                 "stream-anything", "data: x"])
def test_bad_event_name_raises(bad):
    with pytest.raises(ValueError):
        sse.send_sse_event("exec-1", bad, {})


def test_unserialisable_and_oversized_data():
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        sse.send_sse_event("exec-1", "x", {"a": object()})
    with pytest.raises(ValueError, match="over the limit"):
        sse.send_sse_event("exec-1", "x", "y" * 70_000)
    with override_settings(SSE_EXEC={"STORE": "memory", "MAX_EVENT_BYTES": 10}):
        with pytest.raises(ValueError, match="over the limit of 10"):
            sse.send_sse_event("exec-1", "x", "y" * 20)
    with pytest.raises(ValueError, match="UTF-8"):
        sse.send_sse_event("exec-1", "x", "\ud800")
    with pytest.raises(ValueError):
        sse.send_sse_event("exec-1", "x", float("nan"))


def test_nothing_is_logged_when_validation_fails(execution_id):
    sse.send_sse_event(execution_id, "first", 1)
    with pytest.raises(TypeError):
        sse.send_sse_event(execution_id, "x", {1: object()})
    assert sse.send_sse_event(execution_id, "second", 2) == 2


def test_ids_are_sequential_and_close_is_idempotent(execution_id):
    assert [sse.send_sse_event(execution_id, "e", i) for i in range(3)] == [1, 2, 3]
    assert sse.close_sse_connections(execution_id) == 4
    assert sse.close_sse_connections(execution_id) == 4
    with pytest.raises(sse.ExecutionClosed):
        sse.send_sse_event(execution_id, "late", None)


def test_django_types_are_encoded():
    import datetime
    import decimal
    import uuid

    from django_sse_exec.wire import encode_data

    text = encode_data({"when": datetime.datetime(2026, 1, 2, 3, 4, 5), "d": decimal.Decimal("1.5"),
                        "u": uuid.UUID(int=1)})
    assert text == ('{"when":"2026-01-02T03:04:05","d":"1.5",'
                    '"u":"00000000-0000-0000-0000-000000000001"}')


async def test_sync_helper_inside_running_loop_names_async_twin(execution_id):
    with pytest.raises(RuntimeError, match=r"await asend_sse_event"):
        sse.send_sse_event(execution_id, "x", 1)
    with pytest.raises(RuntimeError, match=r"await aget_sse_client_count"):
        sse.get_sse_client_count(execution_id)
    assert await sse.asend_sse_event(execution_id, "x", 1) == 1


def test_sync_helpers_from_many_threads_keep_ids_unique(execution_id):
    results: list[int] = []
    lock = threading.Lock()

    def worker():
        for _ in range(50):
            event_id = sse.send_sse_event(execution_id, "t", None)
            with lock:
                results.append(event_id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, 401))


def test_register_unregister_counts_and_leaves_no_entry(execution_id):
    from django_sse_exec.store import get_store

    sse.register_sse_client(execution_id, "specific.consumer!abc")
    sse.register_sse_client(execution_id, "specific.consumer!def")
    assert sse.get_sse_client_count(execution_id) == 2
    sse.unregister_sse_client(execution_id, "specific.consumer!abc")
    assert sse.get_sse_client_count(execution_id) == 1
    sse.unregister_sse_client(execution_id, "specific.consumer!def")
    assert sse.get_sse_client_count(execution_id) == 0
    assert execution_id not in get_store()._logs  # type: ignore[attr-defined]


async def test_registered_consumer_receives_events(execution_id):
    from django_sse_exec.layer.access import get_layer

    layer = get_layer()
    channel = await layer.new_channel()
    await sse.aregister_sse_client(execution_id, channel)
    event_id = await sse.asend_sse_event(execution_id, "task-start", {"taskId": "t1"})
    message = await asyncio.wait_for(layer.receive(channel), 2)
    sent_at = message.pop("t")
    assert message == {"type": "sse_exec.event", "execution_id": execution_id, "id": event_id,
                       "event": "task-start", "data": '{"taskId":"t1"}'}
    assert abs(sent_at - time.time()) < 5  # the send time travels with the event
    await sse.aunregister_sse_client(execution_id, channel)
    assert await sse.aget_sse_client_count(execution_id) == 0


def test_stream_url_is_relative_and_signed(execution_id):
    url = sse.stream_url(execution_id)
    assert url.startswith(f"/sse/executions/{execution_id}/events?token=")


async def test_memory_store_reads_slices_and_trims():
    store = MemoryStore(history_max_events=5)
    for i in range(8):
        await store.append("x", "e", str(i))
    log = await store.read("x")
    assert [e.id for e in log.events] == [4, 5, 6, 7, 8]
    assert (log.first_id, log.last_id, log.closed) == (4, 8, False)
    assert [e.id for e in (await store.read("x", after=5, upto=7)).events] == [6, 7]
    assert (await store.read("x", upto=0)).events == []
    assert (await store.read("unknown")) == ([], 0, 1, False)


async def test_memory_store_membership_expires():
    store = MemoryStore(member_ttl=0.05)
    await store.add_member("x", "m1")
    assert await store.count_members("x") == 1
    await asyncio.sleep(0.1)
    assert await store.count_members("x") == 0


@pytest.mark.parametrize("argv, warns", [
    (["/srv/mysite/manage.py", "shell"], True),
    (["/venv/bin/django-admin", "import_rows", "x.csv"], True),
    (["/venv/lib/python3.12/site-packages/django/__main__.py", "shell"], True),
    (["/venv/bin/celery", "-A", "mysite", "worker"], True),
    (["/srv/mysite/manage.py", "runserver"], False),
    (["/venv/bin/daphne", "mysite.asgi:application"], False),
    (["/venv/lib/python3.12/site-packages/uvicorn/__main__.py", "mysite.asgi:app"], False),
    (["/venv/bin/pytest"], False),
])
def test_in_memory_store_outside_a_server_says_nothing_will_arrive(argv, warns, caplog):
    """A new user's first try is often ``manage.py shell`` with the default layer: what
    it sends reaches no server, and the log says so (once, when the store is built)."""
    from django_sse_exec.store import warn_if_no_server_here

    with caplog.at_level("WARNING", logger="django_sse_exec"):
        assert warn_if_no_server_here(argv) is warns
    assert ("reach no server and no browser" in caplog.text) is warns
