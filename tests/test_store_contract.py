"""The store contract: the same tests against the memory store and the real Redis.

These pin what the stream relies on (see ``django_sse_exec/store/base.py``):
ids, trimming by count and by bytes, paged reads, closing, TTLs (and logs
kept while streams are open), epochs after a data loss, membership expiry and
``last_ids``. A backend may differ only in where it keeps the bytes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from django_sse_exec.exceptions import ExecutionClosed
from django_sse_exec.store.base import EPOCH_SPAN, Store
from django_sse_exec.store.memory import MemoryStore
from django_sse_exec.wire import STREAM_CLOSED
from tests.helpers import wait_until
from tests.workers import delete_keys

DEFAULTS = {"history_max_events": 5, "history_max_bytes": 1 << 20, "history_ttl": 60,
            "closed_ttl": 30, "member_ttl": 30, "page_events": 3, "page_bytes": 1 << 20}


@pytest.fixture(params=["memory", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Store]]:
    """``make(**options)`` -> a fresh store of the parametrised backend."""
    made: list[Store] = []
    prefix = f"c{uuid.uuid4().hex[:10]}"
    url = request.getfixturevalue("requires_redis") if request.param == "redis" else None

    def build(**options: float) -> Store:
        kwargs = {**DEFAULTS, **options}
        if request.param == "memory":
            store: Store = MemoryStore(**kwargs)
        else:
            from django_sse_exec.store.redis import RedisStore

            store = RedisStore(url=url, prefix=prefix, **kwargs)
        made.append(store)
        return store

    build.kind = request.param  # type: ignore[attr-defined]
    build.lose_data = (lambda: delete_keys(url, prefix)) if url else None  # type: ignore[attr-defined]
    yield build
    for store in made:
        await store.aclose()
    if url:
        delete_keys(url, prefix)


def lose_data(make: Callable[..., Store], store: Store) -> None:
    """What a Redis restarted without its data does to the store (a memory store: clear())."""
    if make.lose_data is None:  # type: ignore[attr-defined]
        store.clear()  # type: ignore[attr-defined]
    else:
        make.lose_data()  # type: ignore[attr-defined]


async def test_ids_are_contiguous_even_when_concurrent(make):
    store = make(history_max_events=1000)
    ids = await asyncio.gather(*(store.append("e", "step", str(i)) for i in range(200)))
    assert sorted(ids) == list(range(1, 201))
    log = await store.read("e")
    assert [e.id for e in log.events] == list(range(1, 201))
    assert (log.last_id, log.first_id, log.closed) == (200, 1, False)


async def test_history_is_trimmed_by_count(make):
    store = make(history_max_events=3)
    for i in range(5):
        await store.append("e", "step", str(i))
    log = await store.read("e")
    assert [e.id for e in log.events] == [3, 4, 5]
    assert (log.first_id, log.last_id) == (3, 5)
    assert log.holds(2) and log.holds(5) and not log.holds(1) and not log.holds(6)


async def test_history_is_trimmed_by_bytes_keeping_the_newest(make):
    size = Store.entry_size(1, "step", "x" * 100)
    store = make(history_max_events=100, history_max_bytes=3 * size + 10)
    for _ in range(5):
        await store.append("e", "step", "x" * 100)
    assert [e.id for e in (await store.read("e")).events] == [3, 4, 5]
    await store.append("e", "step", "y" * 10_000)  # larger than the cap: kept alone
    log = await store.read("e")
    assert [e.id for e in log.events] == [6] and log.first_id == 6


async def test_reads_are_paged_by_count_and_bytes(make):
    store = make(history_max_events=100)
    for _ in range(10):
        await store.append("e", "step", "x" * 1000)
    page = await store.read("e", after=2, limit=3)
    assert [e.id for e in page.events] == [3, 4, 5] and page.last_id == 10
    page = await store.read("e", after=0, max_bytes=2500)
    assert [e.id for e in page.events] == [1, 2]
    page = await store.read("e", after=0, limit=5, max_bytes=10)  # always one event
    assert [e.id for e in page.events] == [1]
    pages = [[e.id for e in p.events] async for p in store.pages("e", after=1, upto=8)]
    assert pages == [[2, 3, 4], [5, 6, 7], [8]]
    assert [[e.id for e in p.events] async for p in store.pages("e", after=10)] == [[]]


async def test_closing_logs_stream_closed_once(make):
    store = make()
    await store.append("e", "step", "1")
    assert await store.close("e") == (2, True)
    assert await store.close("e") == (2, False)
    with pytest.raises(ExecutionClosed):
        await store.append("e", "step", "2")
    log = await store.read("e")
    assert log.closed and log.last_id == 2
    assert log.events[-1] == store.closed_event("e", 2)
    assert log.events[-1].event == STREAM_CLOSED


async def test_an_open_log_expires_after_its_ttl_and_restarts_at_1(make):
    store = make(history_ttl=1)
    await store.append("e", "step", "1")

    async def gone() -> bool:
        return (await store.read("e")).last_id == 0 and (await store.last_ids(["e"]))["e"] == 0

    await wait_until(gone, timeout=5)
    assert await store.append("e", "step", "again") == 1


async def test_a_log_with_open_streams_outlives_its_ttl(make):
    store = make(history_ttl=1, member_ttl=2)
    await store.append("e", "step", "1")
    await store.add_member("e", "m")
    for _ in range(4):  # 2 s: past the history's TTL, members refreshed
        await asyncio.sleep(0.5)
        await store.refresh_members([("e", "m")])
    assert (await store.read("e")).last_id == 1
    assert await store.count_members("e") == 1
    await store.remove_member("e", "m")

    async def gone() -> bool:
        return (await store.read("e")).last_id == 0

    await wait_until(gone, timeout=6)  # within member_ttl after the last stream went


async def test_membership_expires_unless_refreshed(make):
    store = make(member_ttl=1)
    assert await store.count_members("e") == 0
    await store.add_member("e", "a")
    await store.add_member("e", "b")
    assert await store.count_members("e") == 2
    await store.remove_member("e", "b")
    assert await store.count_members("e") == 1

    async def expired() -> bool:
        return await store.count_members("e") == 0

    await wait_until(expired, timeout=5)


async def test_last_ids_of_unknown_and_known_executions(make):
    store = make()
    await store.append("a", "step", "1")
    await store.append("a", "step", "2")
    assert await store.last_ids(["a", "nobody"]) == {"a": 2, "nobody": 0}
    assert await store.last_ids([]) == {}


async def test_a_store_that_never_lost_data_counts_from_1(make):
    store = make()
    assert [await store.append("e", "step", "1") for _ in range(3)] == [1, 2, 3]
    assert await make().append("other", "step", "1") == 1  # another process, same store


async def test_after_a_data_loss_new_ids_start_past_every_old_one(make):
    store = make()
    for _ in range(5):
        await store.append("e", "step", "old")
    lose_data(make, store)
    first = await store.append("e", "step", "new")
    assert first > EPOCH_SPAN and first % EPOCH_SPAN == 1  # a new epoch's first id
    assert first // EPOCH_SPAN >= int(time.time()) - 5
    assert await store.append("fresh", "step", "1") == first - first % EPOCH_SPAN + 1
    log = await store.read("e")
    assert not log.holds(5)  # the old position is recognisably foreign
    assert [e.data for e in log.events] == ["new"]
    # A second loss moves to a later epoch still.
    lose_data(make, store)
    assert await store.append("e", "step", "newer") > first


async def test_a_loss_noticed_by_a_sweep_starts_a_new_epoch_before_the_next_write(make):
    """The web process's repair sweep (``last_ids``) restores the marker, so even a
    sender that never saw the old epoch writes into the new one."""
    reader = make()
    await reader.append("e", "step", "1")
    lose_data(make, reader)
    await reader.last_ids(["e"])
    if make.kind == "redis":  # a fresh process: it knows no epoch of its own
        assert await make().append("e", "step", "2") > EPOCH_SPAN
    else:
        assert await reader.append("e", "step", "2") > EPOCH_SPAN
