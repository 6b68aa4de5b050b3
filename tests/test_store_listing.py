"""The store listing behind the admin page, on both backends (real Redis).

(Apart from tests/test_admin.py: its Chromium fixture keeps an event loop running
in the main thread, which async tests cannot share.)
"""

from __future__ import annotations

import uuid

import pytest


@pytest.mark.parametrize("backend", ["memory", "redis", "redis-3-hosts"])
async def test_store_listing_pages_through_every_execution_once(backend, request):
    """The listing behind the page: every execution exactly once over the pages, search,
    and the summary's fields (closed, viewers, lease, idle, start data); on three hosts
    the pages walk every host."""
    from django_sse_exec.store.hosts import HostSpec
    from django_sse_exec.store.memory import MemoryStore
    from django_sse_exec.store.redis import RedisStore
    from tests.workers import delete_keys

    requires_redis = request.getfixturevalue("requires_redis") if backend != "memory" else ""
    prefix = f"list{uuid.uuid4().hex[:8]}"
    if backend == "memory":
        store = MemoryStore()
    elif backend == "redis":
        store = RedisStore(url=requires_redis, prefix=prefix)
    else:
        make = request.getfixturevalue("make_private_redis")
        store = RedisStore(hosts=[HostSpec(url=make().url) for _ in range(3)], prefix=prefix)
    try:
        ids = [f"run-{n:03d}" for n in range(230)] + ["other-1", "other-2"]
        for execution_id in ids:
            await store.append(execution_id, "execution-start", '{"startTime":1}')
        await store.append("run-007", "task-start", '{"taskId":"a"}')
        await store.close("run-008")
        await store.add_member("run-007", "m1")
        await store.add_member("run-007", "m2")
        await store.hold_lease("run-007", 30)
        await store.append("_fuser_c1", "execution-added", '{"executionId":"run-001"}')  # a feed
        cursor, seen, pages = "0", [], 0
        while True:
            page, cursor = await store.list_executions(cursor, 50)
            seen += [s.execution_id for s in page]
            pages += 1
            assert len(page) <= 150
            if cursor == "0":
                break
        assert sorted(seen) == sorted(ids) and pages >= 2
        found, _ = await store.list_executions("0", 50, "other")
        assert sorted(s.execution_id for s in found) == ["other-1", "other-2"]
        summary = await store.describe_execution("run-007")
        assert (summary.last_id, summary.closed, summary.viewers, summary.leased) == (
            2, False, 2, True)
        assert summary.last_event == "task-start" and summary.start_data == '{"startTime":1}'
        assert 0 <= summary.idle < 30
        closed = await store.describe_execution("run-008")
        assert closed.closed and closed.last_event == "stream-closed" and not closed.leased
        assert await store.describe_execution("never-seen") is None
    finally:
        if backend != "memory":
            await store.aclose()
        if backend == "redis":
            delete_keys(requires_redis, prefix)
