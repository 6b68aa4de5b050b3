"""What one atomic append also does, against the memory store and the real Redis: keys
(at most once per key, bounded, forgotten with the log), cancel requests, and stalls
(claimed once, announced only while still stalled, resumed by the next report)."""

from __future__ import annotations

import asyncio
import time

import pytest

from django_sse_exec.exceptions import ExecutionClosed
from django_sse_exec.store.base import CANCEL, NOTICE, STALLED
from tests.test_store_contract import lose_data, make  # noqa: F401  (fixture)


async def test_a_key_is_logged_once_even_when_concurrent(make):
    store = make(history_max_events=100)
    got = await asyncio.gather(*(store.append("e", "step", str(i), key="k") for i in range(50)))
    log = await store.read("e")
    assert len(log.events) == 1 and set(got) == {log.events[0].id}
    assert sum(not a.repeated for a in got) == 1
    other = await store.append("e", "step", "x", key="other")
    assert other == 2 and not other.repeated
    assert await store.append("e", "step", "y") == 3  # no key: always logged


async def test_keys_are_bounded_newest_first(make):
    store = make(history_max_events=100, send_keys_max=3)
    for n in range(5):
        await store.append("e", "step", str(n), key=f"k{n}")
    assert (await store.append("e", "step", "again", key="k4")).repeated
    assert (await store.append("e", "step", "again", key="k2")).repeated
    forgotten = await store.append("e", "step", "again", key="k0")
    assert not forgotten.repeated and forgotten == 6  # k0 was the oldest of five


async def test_keys_go_with_the_log(make):
    store = make()
    await store.append("e", "step", "1", key="k")
    lose_data(make, store)
    again = await store.append("e", "step", "1", key="k")
    assert not again.repeated


async def test_a_closed_execution_refuses_keyed_appends(make):
    store = make()
    await store.append("e", "step", "1", key="k")
    await store.close("e")
    with pytest.raises(ExecutionClosed) as closed:
        await store.append("e", "step", "1", key="k")
    assert closed.value.cancel_requested is False


async def test_a_cancel_request_is_seen_by_every_later_append(make):
    store = make()
    first = await store.append("e", "progress", "1")
    assert not first.cancel_requested and not await store.cancel_requested("e")
    request = await store.append("e", "execution-cancel-requested", "{}", key="cancel",
                                 kind=CANCEL)
    assert request.cancel_requested and await store.cancel_requested("e")
    assert (await store.append("e", "progress", "2")).cancel_requested
    assert (await store.append("e", "execution-cancel-requested", "{}", key="cancel",
                                kind=CANCEL)).repeated
    await store.close("e")
    with pytest.raises(ExecutionClosed) as closed:
        await store.append("e", "progress", "3")
    assert closed.value.cancel_requested is True
    assert not await store.cancel_requested("other")


async def test_an_execution_silent_for_stall_after_is_claimed_once(make):
    store = make(stall_after=0.3)
    await store.append("quiet", "progress", "1")
    await store.append("busy", "progress", "1")
    await store.append("done", "progress", "1")
    await store.close("done")
    await asyncio.sleep(0.2)
    await store.append("busy", "progress", "2")
    await store.append("quiet", "note", "1", kind=NOTICE)  # a notice is not a report
    assert await store.claim_stalled() == []
    await asyncio.sleep(0.2)
    claimed = await store.claim_stalled()
    assert [e for e, _ in claimed] == ["quiet"]
    assert abs(claimed[0][1] - (time.time() - 0.4)) < 0.2  # when it last reported
    assert await store.claim_stalled() == []  # handed to one caller only
    notice = await store.append("quiet", "execution-stalled", "{}", kind=STALLED)
    assert notice > 0 and not notice.skipped
    assert not (await store.append("quiet", "execution-stalled", "{}", kind=STALLED)) > 0
    resumed = await store.append("quiet", "progress", "2")
    assert resumed.resumed
    assert not (await store.append("quiet", "progress", "3")).resumed


async def test_a_report_before_the_notice_skips_it(make):
    store = make(stall_after=0.2)
    await store.append("e", "progress", "1")
    await asyncio.sleep(0.3)
    assert [e for e, _ in await store.claim_stalled()] == ["e"]
    report = await store.append("e", "progress", "2")
    assert not report.resumed  # its stall was never announced
    notice = await store.append("e", "execution-stalled", "{}", kind=STALLED)
    assert notice.skipped and notice == 0
    assert [e.event for e in (await store.read("e")).events] == ["progress", "progress"]


async def test_a_stall_notice_never_brings_back_a_lost_log(make):
    store = make(stall_after=0.2)
    await store.append("e", "progress", "1")
    await asyncio.sleep(0.3)
    assert [e for e, _ in await store.claim_stalled()] == ["e"]
    await store.delete("e")
    assert (await store.append("e", "execution-stalled", "{}", kind=STALLED)).skipped
    assert (await store.read("e")).last_id == 0


async def test_without_stall_after_nothing_is_watched(make):
    store = make()
    await store.append("e", "progress", "1")
    await asyncio.sleep(0.1)
    assert await store.claim_stalled() == []
