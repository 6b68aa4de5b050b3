"""Streams of many executions on one connection (fixed sets and feeds), through real servers.

Run on both entry points (the view and the fast path). The resume tests cut the
connection at random bytes, as a network does: the client keeps only the events
completed before the cut, and comes back with the last cursor it saw.
"""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from tests.helpers import wait_until
from tests.sse import SSEClient, SSEParser

pytestmark = pytest.mark.asyncio


def multi_url(srv, ids, **kwargs):
    from django_sse_exec import multi_stream_url

    return srv.base_url + multi_stream_url(ids, **kwargs)


def feed_url(srv, feed, **kwargs):
    from django_sse_exec import feed_stream_url

    return srv.base_url + feed_stream_url(feed, **kwargs)


def by_execution(events):
    """``{execution id: [(id, event name, data), ...]}`` of a multi stream's events."""
    out: dict[str, list] = {}
    for e in events:
        if e.event in ("execution-added", "stream-reset"):
            continue
        body = e.json
        out.setdefault(body["executionId"], []).append((body["id"], e.event, body.get("data")))
    return out


async def resume_until_closed(url, rng, *, max_events=15, timeout=60, feed_ends=None):
    """Read a multi stream, cutting the connection at a random byte every few events.

    Returns every event the client kept, across all connections, and the final
    cursor. Ends when the server ends the stream (a set whose executions all
    closed) or, for a feed, when ``feed_ends(events)`` is true. Fails when no new
    event was kept for ``timeout`` seconds: the senders set the pace, and on a
    loaded machine their pace, not the stream's, is what takes time.
    """
    kept = []
    cursor = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    connections = 0
    while loop.time() < deadline:
        headers = {"Last-Event-ID": cursor} if cursor else {}
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http:
            async with http.stream("GET", url, headers=headers) as resp:
                connections += 1
                if resp.status_code == 204:
                    return kept, cursor, connections
                assert resp.status_code == 200, resp.status_code
                raw = b""
                parser = SSEParser()
                got: list = []
                budget = rng.randint(1, max_events)
                ended = True
                async for chunk in resp.aiter_raw():
                    raw += chunk
                    got.extend(parser.feed(chunk))
                    if feed_ends is not None and feed_ends(kept + got):
                        break  # a feed never ends: stop once everything is in
                    if len(got) >= budget:
                        ended = False
                        break
                # The connection dies somewhere in what arrived: keep what was complete.
                cut = len(raw) if ended else rng.randint(len(raw) // 2, len(raw))
                parser = SSEParser(last_event_id=cursor)
                complete = parser.feed(raw[:cut])
                if complete:
                    deadline = loop.time() + timeout
                kept.extend(complete)
                cursor = parser.last_event_id
                if feed_ends is not None and feed_ends(kept):
                    return kept, cursor, connections
    raise TimeoutError(f"stream did not end; kept {len(kept)} events, none new for {timeout} s")


def assert_exact(events, expected: dict[str, int]):
    """Every execution's ids 1..n exactly once, in order (n: its stream-closed)."""
    got = by_execution(events)
    for execution_id, last in expected.items():
        ids = [i for i, _, _ in got.get(execution_id, [])]
        assert ids == list(range(1, last + 1)), (execution_id, ids)


async def test_set_carries_every_execution_with_wrapped_data(server, execution_id):
    ids = [f"{execution_id}-{i}" for i in range(3)]
    async with SSEClient(multi_url(server, ids)) as client:
        await client.read_chunk()
        for i, e in enumerate(ids):
            await server.asend(e, ("step", {"n": i}))
        events = await client.wait_for(lambda ev: len(ev) >= 3)
        assert [e.event for e in events] == ["step"] * 3
        assert [e.json for e in events] == [
            {"executionId": ids[i], "id": 1, "data": {"n": i}} for i in range(3)]
        assert len({e.id for e in events}) == 3
        # One connection counts as a client of each of its executions.
        for e in ids:
            assert server.count(e) == 1


async def test_set_replays_what_was_sent_before_connect(server, execution_id):
    ids = [f"{execution_id}-{i}" for i in range(4)]
    for e in ids:
        await server.asend(e, ("a", 1), ("b", 2))
    async with SSEClient(multi_url(server, ids)) as client:
        events = await client.wait_for(lambda ev: len(ev) >= 8)
    assert {e: [i for i, _, _ in v] for e, v in by_execution(events).items()} == {e: [1, 2] for e in ids}


async def test_twenty_executions_resume_exactly_through_random_drops(server, execution_id):
    rng = random.Random(execution_id)
    ids = [f"{execution_id}-{i}" for i in range(20)]
    url = multi_url(server, ids)
    plan = [e for e in ids for _ in range(10)]
    rng.shuffle(plan)

    async def send_all():
        for n, e in enumerate(plan):
            await server.asend(e, ("step", n))
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 0.02)
        for e in ids:
            await asyncio.to_thread(server.close, e)

    sender = asyncio.create_task(send_all())
    kept, cursor, connections = await resume_until_closed(url, rng)
    await sender
    assert connections > 5
    assert_exact(kept, {e: 11 for e in ids})
    got = by_execution(kept)
    assert all(v[-1][1] == "stream-closed" for v in got.values())
    # Everything closed and seen: a reconnect is told there is nothing more.
    async with httpx.AsyncClient() as http:
        assert (await http.get(url, headers={"Last-Event-ID": cursor})).status_code == 204


async def test_set_ends_only_when_all_its_executions_closed(server, execution_id):
    a, b = f"{execution_id}-a", f"{execution_id}-b"
    async with SSEClient(multi_url(server, [a, b])) as client:
        await client.read_chunk()
        await asyncio.to_thread(server.close, a)
        await client.wait_for(lambda ev: len(ev) >= 1)
        await server.asend(b, ("still", 1))
        await client.wait_for(lambda ev: len(ev) >= 2)
        await asyncio.to_thread(server.close, b)
        events = await client.read_until_closed()
    assert [(e.event, e.json["executionId"]) for e in events] == [
        ("stream-closed", a), ("still", b), ("stream-closed", b)]
    assert events[0].json["data"] == {"executionId": a, "lastEventId": 1}


async def test_a_token_for_a_set_refuses_an_id_outside_it(server, execution_id):
    from urllib.parse import parse_qs, urlencode, urlsplit

    ids = [f"{execution_id}-{i}" for i in range(3)]
    url = multi_url(server, ids)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    async with httpx.AsyncClient() as http:
        for other in ([*ids, f"{execution_id}-x"], ids[:2], [ids[1], ids[0], ids[2]],
                      [f"{execution_id}-x"]):
            resp = await http.get(base + "?" + urlencode({"ids": ",".join(other),
                                                          "token": query["token"][0]}))
            assert (resp.status_code, resp.text) == (403, "token is for another set of executions")
        single = server.base_url and __import__("django_sse_exec").stream_url(ids[0])
        resp = await http.get(base + "?" + urlencode({"ids": ids[0],
                                                      "token": single.split("token=")[1]}))
        assert resp.status_code == 403  # a single stream's token opens no set
        resp = await http.get(base + "?" + urlencode({"ids": ",".join(ids)}))
        assert (resp.status_code, resp.text) == (403, "missing token")
        for bad in ("", "a,,b", "a,a", "bad id", ",".join(f"e{i}" for i in range(101))):
            resp = await http.get(base + "?" + urlencode({"ids": bad, "token": query["token"][0]}))
            assert resp.status_code == 404, bad


async def test_history_trimmed_past_a_position_resets_that_execution_only(make_server, execution_id):
    srv = make_server("daphne", sse_exec={"HISTORY_MAX_EVENTS": 5})
    a, b = f"{execution_id}-a", f"{execution_id}-b"
    url = multi_url(srv, [a, b])
    await srv.asend(a, ("x", 1))
    await srv.asend(b, ("y", 1))
    async with SSEClient(url) as client:
        events = await client.wait_for(lambda ev: len(ev) >= 2)
    cursor = client.parser.last_event_id
    await srv.asend(a, *[("x", i) for i in range(2, 12)])  # a's 2..6 are trimmed away
    await srv.asend(b, ("y", 2))
    async with SSEClient(url, {"Last-Event-ID": cursor}) as client:
        events = await client.wait_for(lambda ev: len(ev) >= 7)
    assert [e.event for e in events][:1] == ["stream-reset"]
    assert events[0].json == {"executionId": a, "requestedAfter": 1, "firstRetainedId": 7}
    got = by_execution(events)
    assert [i for i, _, _ in got[a]] == [7, 8, 9, 10, 11]
    assert [i for i, _, _ in got[b]] == [2]


async def test_garbage_cursor_replays_everything(server, execution_id):
    ids = [f"{execution_id}-{i}" for i in range(2)]
    for e in ids:
        await server.asend(e, ("a", 1))
    for garbage in ("17", "zz", "0-1.", "0-1.0-2", "0-1!", "0-" + "1" * 20):
        async with SSEClient(multi_url(server, ids), {"Last-Event-ID": garbage}) as client:
            events = await client.wait_for(lambda ev: len(ev) >= 2)
        assert sorted(by_execution(events)) == sorted(ids)


async def test_feed_announces_executions_and_streams_them(server, execution_id):
    feed = f"user:{execution_id}"
    first, second = f"{execution_id}-1", f"{execution_id}-2"
    await asyncio.to_thread(server.feed_add, feed, first)
    await server.asend(first, ("step", 1))
    async with SSEClient(feed_url(server, feed)) as client:
        await client.wait_for(lambda ev: len(ev) >= 2)
        await asyncio.to_thread(server.feed_add, feed, second)
        await asyncio.to_thread(server.feed_add, feed, first)  # again: nothing new
        await server.asend(second, ("step", 2))
        await server.asend(first, ("step", 3))
        events = await client.wait_for(lambda ev: len(ev) >= 5)
    assert [(e.event, e.json.get("executionId")) for e in events] == [
        ("execution-added", first), ("step", first), ("execution-added", second),
        ("step", second), ("step", first)]
    assert events[0].json == {"executionId": first, "feed": feed}


async def test_feed_resumes_exactly_through_random_drops(server, execution_id):
    rng = random.Random(execution_id)
    feed = f"team:{execution_id}"
    ids = [f"{execution_id}-{i}" for i in range(12)]
    url = feed_url(server, feed)

    async def run():
        for e in ids:
            await asyncio.to_thread(server.feed_add, feed, e)
            for n in range(5):
                await server.asend(rng.choice(ids[:ids.index(e) + 1]), ("step", n))
            await asyncio.sleep(rng.random() * 0.02)
        for e in ids:
            await asyncio.to_thread(server.close, e)

    sent = asyncio.create_task(run())
    kept, _, connections = await resume_until_closed(
        url, rng, feed_ends=lambda ev: sum(e.event == "stream-closed" for e in ev) == len(ids))
    await sent
    assert connections > 3
    added = [e.json["executionId"] for e in kept if e.event == "execution-added"]
    assert added == ids  # each announced once, in the order they joined
    got = by_execution(kept)
    for e in ids:
        ids_seen = [i for i, _, _ in got[e]]
        assert ids_seen == list(range(1, len(ids_seen) + 1)) and got[e][-1][1] == "stream-closed", e
    assert sum(len(v) for v in got.values()) == len(ids) * 5 + len(ids)


async def test_feed_leaves_out_executions_gone_after_closed_ttl(make_server, execution_id):
    srv = make_server("daphne", sse_exec={"CLOSED_TTL": 1})
    feed = f"user:{execution_id}"
    old, new = f"{execution_id}-old", f"{execution_id}-new"
    await asyncio.to_thread(srv.feed_add, feed, old)
    await srv.asend(old, ("step", 1))
    await asyncio.to_thread(srv.close, old)
    await asyncio.sleep(1.5)
    await asyncio.to_thread(srv.feed_add, feed, new)  # joined, nothing sent yet: stays
    async with SSEClient(feed_url(srv, feed)) as client:
        events = await client.wait_for(lambda ev: len(ev) >= 1)
        await srv.asend(new, ("step", 1))
        events = await client.wait_for(lambda ev: len(ev) >= 2)
    assert [(e.event, e.json.get("executionId")) for e in events] == [
        ("execution-added", new), ("step", new)]


async def test_feed_token_is_for_one_feed(server, execution_id):
    from django_sse_exec import feed_stream_url

    url = feed_stream_url(f"user:{execution_id}")
    other = url.replace(f"user:{execution_id}", f"user:{execution_id}x", 1)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        resp = await http.get(other)
        assert (resp.status_code, resp.text) == (403, "token is for another feed")
        assert (await http.get("/sse/feeds/bad%20name/events?token=x")).status_code == 404


async def test_streams_leave_no_residue(server, execution_id):
    ids = [f"{execution_id}-{i}" for i in range(30)]
    async with SSEClient(multi_url(server, ids)) as client:
        await client.read_chunk()
        await wait_until(lambda: all(server.count(e) == 1 for e in ids[:3]), 10, "counted")
    await wait_until(lambda: server.hub()["streams"] == 0 or all(server.count(e) == 0 for e in ids),
                     10, "memberships gone")
    assert all(server.count(e) == 0 for e in ids)


@pytest.fixture(params=["pubsub", "redis"])
def redis_servers(request, requires_redis, make_server):
    """Two daphne processes sharing one Redis (each layer); keys removed afterwards."""
    from tests.workers import delete_keys, redis_env

    env = redis_env(requires_redis, request.param)
    yield make_server("daphne", env=env), make_server("daphne", env=env)
    delete_keys(requires_redis, env["TEST_KEY_PREFIX"])


async def test_feed_and_set_across_processes_on_redis(redis_servers, execution_id):
    web, other = redis_servers
    feed = f"user:{execution_id}"
    ids = [f"{execution_id}-{i}" for i in range(3)]
    async with SSEClient(feed_url(web, feed)) as fed, SSEClient(multi_url(web, ids)) as fixed:
        await fed.read_chunk()
        await fixed.read_chunk()
        for e in ids:  # joined and sent through the other process
            await asyncio.to_thread(other.feed_add, feed, e)
            await other.asend(e, ("step", 1), ("step", 2))
        events = await fed.wait_for(lambda ev: len(ev) >= 9, timeout=20)
        assert [e.json["executionId"] for e in events if e.event == "execution-added"] == ids
        assert {e: [i for i, _, _ in v] for e, v in by_execution(events).items()} == \
            {e: [1, 2] for e in ids}
        events = await fixed.wait_for(lambda ev: len(ev) >= 6, timeout=20)
        assert {e: [i for i, _, _ in v] for e, v in by_execution(events).items()} == \
            {e: [1, 2] for e in ids}
    # A reader of the other process resumes the feed where the first one was.
    async with SSEClient(feed_url(other, feed), {"Last-Event-ID": fed.parser.last_event_id}) as again:
        await again.read_chunk()
        await web.asend(ids[1], ("step", 3))
        events = await again.wait_for(lambda ev: len(ev) >= 1, timeout=20)
    assert [(e.json["executionId"], e.json["id"]) for e in events] == [(ids[1], 3)]


async def test_security_headers_and_caps_hold_for_streams_of_many(make_server, execution_id):
    from tests.test_hardening import assert_secure

    srv = make_server("daphne", sse_exec={"MAX_STREAMS_PER_ADDRESS": 2, "STREAM_CAP_RETRY_AFTER": 7})
    ids = [f"{execution_id}-{i}" for i in range(2)]
    url, feed = multi_url(srv, ids), feed_url(srv, f"user:{execution_id}")
    async with SSEClient(url) as a, SSEClient(feed) as b:
        for client in (a, b):
            assert client.response.status_code == 200
            assert_secure(client.response.headers, vary_cookie=False)
        async with httpx.AsyncClient() as http:
            for over in (await http.get(url), await http.get(feed)):  # one connection each: capped
                assert (over.status_code, over.headers["retry-after"]) == (429, "7")
                assert_secure(over.headers, vary_cookie=False)
    async with httpx.AsyncClient() as http:
        refused = await http.get(url.split("&token=")[0] + "&token=abc")
        assert refused.status_code == 403
        assert_secure(refused.headers, vary_cookie=False)
        assert (await http.post(url)).status_code == 405


async def test_streams_of_many_rotate_and_resume_exactly(make_server, execution_id):
    srv = make_server("daphne", sse_exec={"MAX_STREAM_LIFETIME": 1,
                                          "MAX_STREAM_LIFETIME_JITTER": 0})
    ids = [f"{execution_id}-{i}" for i in range(3)]
    url = multi_url(srv, ids)
    kept, cursor = [], None
    for round_ in range(3):
        async with SSEClient(url, {"Last-Event-ID": cursor} if cursor else {}) as client:
            for e in ids:
                await srv.asend(e, ("step", round_))
            await client.read_until_closed(timeout=10)  # ended by the server after ~1 s
        assert b": reconnect (lifetime)" in client.raw
        kept += client.events
        cursor = client.parser.last_event_id
    assert {e: [i for i, _, _ in v] for e, v in by_execution(kept).items()} == \
        {e: [1, 2, 3] for e in ids}


async def test_html_format_sends_each_executions_state_and_resumes(server, execution_id):
    ids = [f"{execution_id}-{i}" for i in range(2)]
    url = multi_url(server, ids) + "&format=html"
    await server.asend(ids[0], ("execution-start", {"executionId": ids[0], "totalTasks": 1}))
    async with SSEClient(url) as client:
        events = await client.wait_for(lambda ev: len(ev) >= 1)
        assert events[0].event == f"state:{ids[0]}" and 'data-status="running"' in events[0].data
        cursor = client.parser.last_event_id
        await server.asend(ids[1], ("execution-start", {"executionId": ids[1], "totalTasks": 2}))
        events = await client.wait_for(lambda ev: len(ev) >= 2)
        assert events[1].event == f"state:{ids[1]}"
    await server.asend(ids[0], ("task-start", {"taskId": "a"}))
    async with SSEClient(url, {"Last-Event-ID": cursor}) as client:  # missed ids[1]'s start
        events = await client.wait_for(lambda ev: len(ev) >= 2)
    assert sorted(e.event for e in events) == sorted(f"state:{e}" for e in ids)
    for e in ids:
        await asyncio.to_thread(server.close, e)
    async with SSEClient(url) as client:
        events = await client.read_until_closed()  # ends when both closed
    # No stream-closed per execution (htmx would close the whole connection at the
    # first); one of the set's own at the very end, with no id (the cursor stays).
    assert all(e.event.startswith("state:") for e in events[:-1])
    assert events[-1].event == "stream-closed" and events[-1].id == events[-2].id
    assert client.raw.rsplit(b"\n\n", 2)[-2].startswith(b"event: stream-closed\n")  # no id: line
    async with SSEClient(url, {"Last-Event-ID": client.parser.last_event_id}) as client:
        assert client.response.status_code == 204  # a reconnect after the end: nothing more
    async with httpx.AsyncClient() as http:
        assert (await http.get(multi_url(server, ids) + "&format=xml")).status_code == 400
        # A feed serves JSON only: any other format is refused like a set's bad one.
        feed = feed_url(server, f"user:{execution_id}")
        for bad in ("xml", "html", "json&format=json"):
            assert (await http.get(f"{feed}&format={bad}")).status_code == 400, bad
        async with SSEClient(f"{feed}&format=json") as client:
            assert client.response is not None and client.response.status_code == 200
