"""The stream endpoint through a real daphne server over real sockets.

Every test that reads events (but those of ``SINGLE_ONLY``) runs on the three kinds of stream — one
execution's, a fixed set's (``multi_stream_url``: the execution and a closed
peer) and a feed's — on both entry points: a stream of many, read for one of its
executions (``SSEClient(only=...)``), must behave exactly as that execution's
own stream (ids, order, replay, resume, end), except that a feed never ends.
"""

from __future__ import annotations

import asyncio
import gzip

import httpx
import pytest

from tests.sse import SSEClient, StreamURL
from tests.tokens import expired_stream_url

pytestmark = pytest.mark.asyncio


#: Tests run on one execution's stream only: a set's and a feed's exact resume through
#: drops is the kind contract's (tests/test_kind_contract.py, from any cut).
SINGLE_ONLY = {"test_reconnect_with_last_event_id_no_gap_no_duplicate"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every kind of stream, or those of ``--stream-kinds`` (the matrix's core subset
    runs the single kind: what depends on the Python and Django versions is in it)."""
    if "kind" in metafunc.fixturenames:
        kinds = metafunc.config.getoption("stream_kinds").split(",")
        if metafunc.function.__name__ in SINGLE_ONLY:
            kinds = ["single"]
        metafunc.parametrize("kind", kinds, scope="function")


@pytest.fixture
def stream_of(kind, url_for):
    """``stream_of(server, execution_id)``: a URL of this test's kind of stream, for that execution."""
    from django_sse_exec import feed_stream_url, multi_stream_url

    def make(srv, execution_id):
        if kind == "single":
            return StreamURL.of(url_for(srv, execution_id), None)
        if kind == "set":
            peer = f"{execution_id}-peer"
            srv.close(peer)  # the set ends with the execution, and carries a peer's events
            return StreamURL.of(srv.base_url + multi_stream_url([peer, execution_id]), execution_id)
        feed = f"t:{execution_id}"
        srv.feed_add(feed, execution_id)
        return StreamURL.of(srv.base_url + feed_stream_url(feed), execution_id)

    return make


async def test_headers_and_preamble_before_any_event(server, stream_of, execution_id):
    async with SSEClient(stream_of(server, execution_id), {"Accept-Encoding": "gzip"}) as client:
        resp = client.response
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["cache-control"] == "no-cache, no-store, private"
        assert resp.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in resp.headers  # GZipMiddleware left it alone
        first = await client.read_chunk(timeout=2)
        assert first.startswith(b"retry: 2000\n: connected\n\n")
        assert client.events == []


async def test_events_arrive_in_order_with_ids(server, stream_of, execution_id):
    async with SSEClient(stream_of(server, execution_id)) as client:
        await client.read_chunk()
        ids = await server.asend(execution_id, *[("step", {"n": i, "text": "héllo"}) for i in range(20)])
        assert ids == list(range(1, 21))
        events = await client.wait_for(lambda ev: len(ev) >= 20)
        assert [e.int_id for e in events] == ids
        assert [e.json["n"] for e in events] == list(range(20))
        assert events[0].json["text"] == "héllo"
        assert b'{"n":0,"text":"h\xc3\xa9llo"}' in client.raw  # compact, ensure_ascii=False


async def test_two_clients_share_and_other_execution_gets_nothing(server, stream_of, execution_id):
    other = execution_id + "-other"
    async with SSEClient(stream_of(server, execution_id)) as a, \
            SSEClient(stream_of(server, execution_id)) as b, \
            SSEClient(stream_of(server, other)) as c:
        for client in (a, b, c):
            await client.read_chunk()
        await server.asend(execution_id, *[("tick", i) for i in range(5)])
        for client in (a, b):
            events = await client.wait_for(lambda ev: len(ev) >= 5)
            assert [e.json for e in events] == list(range(5))
        with pytest.raises(TimeoutError):
            await c.wait_for(lambda ev: len(ev) >= 1, timeout=0.5)
        assert c.events == []


async def test_disconnect_is_uncounted_and_others_continue(server, stream_of, execution_id):
    a = SSEClient(stream_of(server, execution_id))
    b = SSEClient(stream_of(server, execution_id))
    await a.connect()
    await b.connect()
    await a.read_chunk()
    await b.read_chunk()
    assert server.count(execution_id) == 2
    await a.close()
    for _ in range(50):
        if server.count(execution_id) == 1:
            break
        await asyncio.sleep(0.02)
    assert server.count(execution_id) == 1
    await server.asend(execution_id, ("after", 1))
    events = await b.wait_for(lambda ev: len(ev) >= 1)
    assert events[0].json == 1
    await b.close()
    for _ in range(50):
        if server.count(execution_id) == 0:
            break
        await asyncio.sleep(0.02)
    assert server.count(execution_id) == 0


async def test_late_joiner_gets_whole_history(server, stream_of, execution_id):
    await server.asend(execution_id, *[("e", i) for i in range(10)])
    async with SSEClient(stream_of(server, execution_id)) as client:
        events = await client.wait_for(lambda ev: len(ev) >= 10)
        assert [e.int_id for e in events] == list(range(1, 11))


@pytest.mark.parametrize("via", ["header", "query"])
async def test_reconnect_with_last_event_id_no_gap_no_duplicate(server, stream_of, execution_id, via):
    """Events keep coming while the client drops and reconnects: each id exactly once."""
    total = 300

    async def sender():  # five events a request: a loaded machine's requests set the pace
        for i in range(0, total, 5):
            await server.asend(execution_id, *[("n", n) for n in range(i, i + 5)])
            if i % 25 == 0:
                await asyncio.sleep(0.01)

    task = asyncio.create_task(sender())
    seen: list[int] = []
    last = None
    while len(seen) < total:
        url = stream_of(server, execution_id)
        headers = {}
        if last is not None:
            if via == "header":
                headers["Last-Event-ID"] = last
            else:
                url = StreamURL.of(f"{url}&last_event_id={last}", url.only)
        client = SSEClient(url, headers)
        await client.connect()
        try:
            await client.wait_for(lambda ev: len(ev) >= 40 or (ev and ev[-1].int_id >= total), timeout=60)
        finally:
            await client.close()
        seen.extend(e.int_id for e in client.events)
        last = client.events[-1].resume if client.events else last
    await task
    assert seen == list(range(1, total + 1))


async def test_close_then_end_then_204(server, stream_of, execution_id, kind):
    async with SSEClient(stream_of(server, execution_id)) as client:
        await client.read_chunk()
        await server.asend(execution_id, *[("e", i) for i in range(50)])
        close_id = server.close(execution_id)
        events = await client.read_until_closed()
        assert close_id == 51
        assert [e.int_id for e in events] == list(range(1, 52))
        assert events[-1].event == "stream-closed"
        assert events[-1].json == {"executionId": execution_id, "lastEventId": 51}
    # A reload replays everything and ends.
    async with SSEClient(stream_of(server, execution_id)) as client:
        events = await client.read_until_closed()
        assert [e.int_id for e in events] == list(range(1, 52))
    # A reconnect that has seen everything gets 204 so EventSource stops (a feed
    # goes on: it only has nothing more of this execution).
    seen_all, missed_two = events[-1].resume, events[-3].resume
    if kind != "feed":
        resp = httpx.get(stream_of(server, execution_id), headers={"Last-Event-ID": seen_all})
        assert resp.status_code == 204 and resp.content == b""
    # A reconnect that missed the tail gets just the tail.
    async with SSEClient(stream_of(server, execution_id), {"Last-Event-ID": missed_two}) as client:
        events = await client.read_until_closed()
        assert [e.int_id for e in events] == [50, 51]
    # Sending after close is refused.
    resp = httpx.post(server.base_url + "/control/send",
                      json={"execution_id": execution_id, "events": [["late", 1]]})
    assert resp.status_code == 400 and "closed" in resp.json()["error"]


async def test_403_without_or_with_wrong_token(server, url_for, execution_id):
    base = f"{server.base_url}/sse/executions/{execution_id}/events"
    no_token = httpx.get(base)
    assert no_token.status_code == 403 and no_token.text == "missing token"
    bad = httpx.get(base + "?token=abc")
    assert bad.status_code == 403 and bad.text == "invalid token"
    other = url_for(server, execution_id + "x").split("?")[1]
    wrong = httpx.get(f"{base}?{other}")
    assert wrong.status_code == 403 and wrong.text == "token is for another execution"
    expired = httpx.get(server.base_url + expired_stream_url(execution_id))
    assert expired.status_code == 200 and "event: stream-token-expired\n" in expired.text


@pytest.mark.parametrize("bad_id", ["has%20space", "a" * 65, "semi%3Bcolon", "%0Aline"])
async def test_404_for_malformed_execution_id(server, bad_id):
    resp = httpx.get(f"{server.base_url}/sse/executions/{bad_id}/events?token=x")
    assert resp.status_code == 404


async def test_keepalive_after_silence(make_server, stream_of, execution_id):
    srv = make_server("daphne", sse_exec={"KEEPALIVE": 0.3})
    async with SSEClient(stream_of(srv, execution_id)) as client:
        await client.read_chunk()
        chunk = await client.read_chunk(timeout=3)
        if client.only is not None and not chunk.startswith(b":"):
            chunk = await client.read_chunk(timeout=3)  # after the replay of the peer or feed
        assert chunk == b": keepalive\n\n"


async def test_sync_helpers_from_a_sync_view(server, stream_of, execution_id):
    async with SSEClient(stream_of(server, execution_id)) as client:
        await client.read_chunk()
        ids = server.send(execution_id, *[("s", i) for i in range(10)], sync=True)
        assert ids == list(range(1, 11))
        events = await client.wait_for(lambda ev: len(ev) >= 10, timeout=5)
        assert [e.json for e in events] == list(range(10))


async def test_gzip_is_not_applied_even_when_accepted(server, stream_of, execution_id):
    await server.asend(execution_id, ("x", "y" * 500))
    async with SSEClient(stream_of(server, execution_id), {"Accept-Encoding": "gzip"}) as client:
        events = await client.wait_for(lambda ev: len(ev) >= 1)
        assert events[0].json == "y" * 500
        with pytest.raises(gzip.BadGzipFile):
            gzip.decompress(client.raw)


async def test_method_not_allowed(server, stream_of, execution_id):
    assert httpx.post(stream_of(server, execution_id)).status_code == 405
