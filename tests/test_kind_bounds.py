"""What one stream of each kind costs the server is bounded, whatever the data says.

Each bound has a test here that fails without it (the kind contract's other
rules are in ``tests/test_kind_contract.py``):

* a feed stream follows the executions of the feed's last ``MULTI_STREAM_MAX``
  entries: a feed of 5,000 entries connects with the bytes, the cursor and the
  reads of a feed of 100 (it sent 31 MB and 7,600-character ids, then dropped);
* a state fragment lists ``MAX_ROWS`` task rows at most
  (:mod:`django_sse_exec.render.widget`): a state of a million expected tasks
  renders about as fast as one of ten (it took seconds, inside the event loop);
* the HTML fragment cache keeps ``CACHE_BYTES`` at most, never more than
  ``HISTORY_MAX_BYTES``, and frees an execution with its last stream
  (:mod:`django_sse_exec.render.fragments`; the unit test is in ``tests/test_fragments.py``);
* stalled readers of every kind hold little: a set or feed stream reads each
  execution's log a page at a time when its turn comes (a stalled set of 100
  executions held ~19 MB per connection on Redis, where pages are copies).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest

from tests.kinds import Kind, Subject, read_stream
from tests.test_faults import MB, RssSampler, report
from tests.test_kind_contract import servers  # noqa: F401  (a fixture)
from tests.test_slow_client_proxies import never_reading


def expecting(total_tasks: int) -> Any:
    """The state of an execution whose ``execution-start`` says ``totalTasks``."""
    from django_sse_exec.execution.state import ExecutionState
    from django_sse_exec.wire import Event

    state = ExecutionState("rows")
    state.apply_event(Event(1, "execution-start", '{"executionId":"rows","totalTasks":%d}'
                            % total_tasks))
    return state


def render_seconds(total_tasks: int, runs: int = 5) -> float:
    """The best time of ``runs`` renders of the state of an execution expecting ``total_tasks``."""
    from django.template.loader import render_to_string

    from django_sse_exec.render.widget import state_context

    state = expecting(total_tasks)
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        html = render_to_string("django_sse_exec/state.html", state_context(state))
        best = min(best, time.perf_counter() - started)
    assert f"0 of {total_tasks} task" in html
    return best


def test_a_state_of_a_million_tasks_renders_about_as_fast_as_one_of_ten():
    from django_sse_exec.render.widget import MAX_ROWS, state_context

    small, large = render_seconds(10), render_seconds(1_000_000)
    report("rows", ten_ms=f"{small * 1000:.2f}", million_ms=f"{large * 1000:.2f}")
    # MAX_ROWS rows against 10: a few times the work, not a hundred thousand times.
    assert large < 30 * small, f"{large * 1000:.1f} ms for a million tasks, {small * 1000:.1f} for ten"
    context = state_context(expecting(1_000_000))
    assert len(context["rows"]) == MAX_ROWS and context["rows_hidden"] == 1_000_000 - MAX_ROWS


def counts(events: list, name: str) -> int:
    return sum(e.event == name for e in events)


@pytest.mark.timeout(300)
async def test_a_feed_of_5000_entries_connects_like_a_feed_of_100(servers):
    srv = servers("plain")  # MULTI_STREAM_MAX 100
    window = 100
    measured = {}
    for length in (window, 5000):
        subject = Subject.make(srv, Kind("feed"), length)
        ops = [op for e in subject.ids for op in (["add", subject.feed, e], ["send", e, "step", {}])]
        await srv.script(ops)

        def everything(events: list) -> bool:
            return counts(events, "execution-added") >= window and counts(events, "step") >= window

        started = time.monotonic()
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as http:
            events, cursor, size = await read_stream(http, subject.url, None, everything)
        took = time.monotonic() - started
        announced = [e.json["executionId"] for e in events if e.event == "execution-added"]
        assert announced == subject.ids[-window:]  # the latest, once each
        longest = max(len(e.id or "") for e in events)
        measured[length] = (size, longest, took)
        # Executions join: the oldest leave; a reconnect far behind says so and stays short.
        more = [f"{subject.ids[0]}x{i}" for i in range(3 * window)]
        await srv.script([["add", subject.feed, e] for e in more])

        def moved(events: list) -> bool:
            return counts(events, "execution-added") >= window

        async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as http:
            again, _, again_size = await read_stream(http, subject.url, cursor, moved)
        assert counts(again, "execution-removed") == window
        assert [e.json["executionId"] for e in again if e.event == "execution-added"] == more[-window:]
        assert max(len(e.id or "") for e in again) <= longest + 64
        measured[length] += (again_size,)
    report("feed connect", **{f"entries_{n}": f"{s}B/id {c}/{t * 1000:.0f}ms/again {a}B"
                              for n, (s, c, t, a) in measured.items()})
    # Only the keys grow, by a digit per 36-fold (entry ids in base 36): 2 here, 3 there.
    (small, small_id, _, small_again), (large, large_id, _, large_again) = measured.values()
    assert large < 1.5 * small and large_again < 1.5 * small_again, measured
    assert large_id < 1.5 * small_id and large_id <= window * 12 + 20, measured


@pytest.mark.timeout(120)
async def test_the_fragment_cache_keeps_its_bytes_and_frees_an_execution_with_its_last_stream(
        make_server, url_for, execution_id):
    budget = 256 * 1024
    srv = make_server("daphne", sse_exec={"HISTORY_MAX_BYTES": budget, "KEEPALIVE": 30})
    await srv.script([["fill", execution_id, 300, 2000]])  # ~700 KB sent, ~256 KB retained
    url = url_for(srv, execution_id, format="html")
    last = re.compile(rb'data-last-event-id="300"')
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as http:
        async with http.stream("GET", url) as resp:
            raw, chunks = b"", resp.aiter_raw()  # (kept: a dropped iterator closes the stream)
            while not last.search(raw):
                raw += await asyncio.wait_for(chunks.__anext__(), 15)
            during = (await http.get(srv.base_url + "/control/fragments")).json()
        await asyncio.sleep(0.5)  # the stream's end reaches the server
        after = (await http.get(srv.base_url + "/control/fragments")).json()
    report("fragment cache", during=during, after=after)
    assert 0 < during["bytes"] <= budget and during["executions"] == 1, during
    assert after["executions"] == after["kept"] == after["bytes"] == 0, after


@pytest.mark.alone
@pytest.mark.timeout(300)
async def test_stalled_readers_of_every_kind_hold_little(requires_redis, make_server):
    """Five never-reading clients of each kind; history read from Redis (copies, as in
    production): the server's peak RSS grows by a few MB per connection at most."""
    from tests.workers import delete_keys, redis_env

    env = redis_env(requires_redis, "pubsub")
    srv = make_server("daphne", env=env, sse_exec={"KEEPALIVE": 30})
    try:
        for kind, size in ((Kind("single"), 1), (Kind("single", "html"), 1), (Kind("set"), 100),
                           (Kind("set", "html"), 100), (Kind("feed"), 100)):
            subject = Subject.make(srv, kind, size)
            events, pad = (200, 10_000) if size == 1 else (20, 10_000)  # ~2 MB, ~20 MB of history
            ops = [["add", subject.feed, e] for e in subject.ids] if kind.feed else []
            await srv.script(ops + [["fill", e, events, pad] for e in subject.ids])
            await asyncio.sleep(0.5)
            rss = RssSampler(srv, every=0.05)
            path = subject.url.removeprefix(srv.base_url)
            sockets = [never_reading(("127.0.0.1", srv.port), path) for _ in range(5)]
            try:
                await asyncio.sleep(2)
                growth = await rss.stop()
            finally:
                for sock in sockets:
                    sock.close()
            report(f"stalled {kind}", executions=size, history_mb=f"{size * events * pad / MB:.0f}",
                   per_connection_mb=f"{growth / 5 / MB:.1f}")
            assert growth / 5 < 4 * MB, f"{kind}: {growth / 5 / MB:.1f} MB per stalled connection"
    finally:
        delete_keys(requires_redis, env["TEST_KEY_PREFIX"])
