"""The HTML rendering of streams (``?format=html``) through real servers, view and fast path.

Same ids, replay, reset, 204 and auth as the JSON stream; each event's data is
its template's HTML (escaped, several ``data:`` lines where it has several
lines); the whole state follows each chunk as an unnamed message; fragments
are rendered once per event per process. And the widget's refresh view.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.sse import SSEClient

pytestmark = pytest.mark.asyncio

EVIL = "<script>alert(1)</script>\nsecond line"


def html(server, url_for, execution_id, **kwargs) -> str:
    return url_for(server, execution_id, format="html", **kwargs)


def named(events):
    return [e for e in events if e.event != "message"]


def states(events):
    return [e for e in events if e.event == "message"]


async def test_same_ids_as_json_with_html_data_and_the_state_after_each_chunk(
        server, url_for, execution_id):
    async with SSEClient(url_for(server, execution_id)) as json_client, \
            SSEClient(html(server, url_for, execution_id)) as client:
        await client.read_chunk()
        await server.asend(
            execution_id,
            ("execution-start", {"executionId": execution_id, "totalTasks": 2, "startTime": 1}),
            ("task-start", {"taskId": "t1", "taskTitle": EVIL, "progress": 0, "total": 2}),
            ("deploy", {"version": "1.2", "target": "eu"}),
            ("something.else", {"x": 1}))
        await server.asend(execution_id, ("task-complete", {
            "taskId": "t1", "taskTitle": EVIL, "status": "success", "duration": 1500,
            "progress": 1, "total": 2}))
        await asyncio.to_thread(server.close, execution_id)
        events = await client.read_until_closed()
        json_events = await json_client.read_until_closed()
    assert [e.id for e in named(events)] == [e.id for e in json_events] == [str(n) for n in range(1, 7)]
    assert [e.event for e in named(events)] == [e.event for e in json_events]
    by_name = {e.event: e.data for e in named(events)}
    assert by_name["task-start"] == ('<span data-event="task-start">Started '
                                     '&lt;script&gt;alert(1)&lt;/script&gt;\nsecond line</span>')
    assert by_name["deploy"] == '<p class="deploy">Deployed 1.2 to\neu</p>'  # the project's template
    assert by_name["something.else"] == ('<span class="sse-exec-event" data-event="something.else">'
                                         'something.else</span>')  # the fallback
    assert "<script>" not in client.raw.decode()
    # A state message follows each chunk, with no id of its own (Last-Event-ID stays put),
    # and comes before stream-closed (clients stop reading there).
    assert events[-1].event == "stream-closed" and events[-2].event == "message"
    assert [e.event for e in events].count("message") >= 2
    final = events[-2]
    assert final.id == "5"  # the parser's Last-Event-ID when it arrived: the event before close
    assert 'data-status="closed"' in final.data and 'data-last-event-id="6"' in final.data
    assert 'aria-valuenow="50"' in final.data and "1 of 2 tasks" in final.data


async def test_resume_204_and_refusals_as_on_the_json_stream(server, url_for, execution_id):
    await server.asend(execution_id, ("execution-start", {"totalTasks": 4}),
                       *[("task-complete", {"taskId": f"t{n}", "status": "success"})
                         for n in range(1, 4)])
    async with SSEClient(html(server, url_for, execution_id), {"Last-Event-ID": "3"}) as client:
        events = await client.wait_for(lambda ev: len(states(ev)) >= 1)
    assert [e.id for e in named(events)] == ["4"]
    assert "3 of 4 tasks" in states(events)[-1].data  # the whole state, not only what was replayed
    last = await asyncio.to_thread(server.close, execution_id)
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.get(html(server, url_for, execution_id), headers={"Last-Event-ID": str(last)})
        assert resp.status_code == 204
        resp = await http.get(f"{server.base_url}/sse/executions/{execution_id}/events?format=html")
        assert resp.status_code == 403
        resp = await http.get(f"{server.base_url}/sse/executions/bad%20id/events?format=html")
        assert resp.status_code == 404
        for query in ("&format=xml", "&format=html&format=json"):
            resp = await http.get(url_for(server, execution_id) + query)
            assert (resp.status_code, resp.text) == (400, "unknown format")


async def test_stream_reset_is_html_without_an_id(make_server, url_for, execution_id):
    server = make_server("daphne", sse_exec={"HISTORY_MAX_EVENTS": 5})
    await server.asend(execution_id, *[("step", {"n": n}) for n in range(1, 11)])
    async with SSEClient(html(server, url_for, execution_id), {"Last-Event-ID": "2"}) as client:
        events = await client.wait_for(lambda ev: len(states(ev)) >= 1)
    assert events[0].event == "stream-reset" and events[0].id is None
    assert events[0].data.startswith('<span data-event="stream-reset">')
    assert [e.id for e in named(events)[1:]] == [str(n) for n in range(6, 11)]


async def test_each_fragment_is_rendered_once_per_process(server, url_for, execution_id):
    async def stats() -> dict:
        async with httpx.AsyncClient() as http:
            return (await http.get(server.base_url + "/control/fragments")).json()

    before = await stats()
    clients = [SSEClient(html(server, url_for, execution_id)) for _ in range(3)]
    for client in clients:
        await client.connect()
        await client.read_chunk()
    for n in range(1, 11):
        await server.asend(execution_id, ("task-complete", {"taskId": f"t{n}", "status": "success",
                                                            "progress": n, "total": 10}))
    for client in clients:
        await client.wait_for(lambda ev: len(named(ev)) == 10 and ev[-1].event == "message")
    late = SSEClient(html(server, url_for, execution_id))  # replays all ten from the cache
    await late.connect()
    await late.wait_for(lambda ev: len(named(ev)) == 10 and ev[-1].event == "message")
    for client in (*clients, late):
        await client.close()
    after = await stats()
    assert after["events"] - before["events"] == 10
    assert after["states"] - before["states"] <= 10
    final = [c.events[-1].data for c in (*clients, late)]
    assert len(set(final)) == 1 and "10 of 10 tasks" in final[0]


async def test_refresh_view_answers_with_the_widget_the_policy_allows(server, execution_id):
    from django_sse_exec.auth.policies import make_token

    token = make_token(execution_id)
    quoted = token.replace(":", "%3A")
    base = f"{server.base_url}/sse/executions/{execution_id}/progress"
    hx = {"HX-Request": "true"}
    await server.asend(execution_id, ("task-start", {"taskId": "a"}))
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.get(f"{base}?token={quoted}&seen=0&refreshes=1", headers=hx)
        assert resp.status_code == 200 and "sse-connect=" in resp.text
        assert "format=html" in resp.text and "last_event_id=1" in resp.text and quoted in resp.text
        assert "refreshes=1" in resp.text  # it moved on since: the count starts again
        # No progress since the widget last saw it, three times: live updates stop.
        resp = await http.get(f"{base}?token={quoted}&seen=1&refreshes=3", headers=hx)
        assert "sse-connect=" not in resp.text and "the stream keeps failing" in resp.text
        resp = await http.get(f"{base}?token=forged", headers=hx)
        assert resp.status_code == 200 and 'data-status="refused"' in resp.text
        assert "invalid token" in resp.text and "sse-exec__body" not in resp.text
        assert (await http.get(f"{base}?token=forged")).status_code == 403
        resp = await http.get(f"{server.base_url}/sse/executions/bad%20id/progress")
        assert resp.status_code == 404
        await asyncio.to_thread(server.close, execution_id)
        resp = await http.get(f"{base}?token={quoted}", headers=hx)
        assert "sse-connect=" not in resp.text and 'data-status="closed"' in resp.text


async def test_an_event_its_template_cannot_render_does_not_end_the_stream(server, url_for,
                                                                           execution_id):
    async with SSEClient(html(server, url_for, execution_id)) as client:
        await client.read_chunk()
        await server.asend(execution_id, ("broken", {"x": 1}), ("deploy", {"version": "2"}))
        events = await client.wait_for(lambda ev: len(named(ev)) == 2 and ev[-1].event == "message")
    assert [(e.event, e.id) for e in named(events)] == [("broken", "1"), ("deploy", "2")]
    assert named(events)[0].data == ""


async def test_the_process_state_follows_a_lost_and_recreated_log(execution_id):
    """In-process, on a memory store that loses its data: the next log's ids start in a
    new epoch, and the state fragments describe the new log alone."""
    from django_sse_exec.render.html import FragmentCache
    from django_sse_exec.store.memory import MemoryStore

    store = MemoryStore()
    cache = FragmentCache(store)

    async def append(*names: str) -> list:
        from django_sse_exec.wire import Event

        events = []
        for name in names:
            data = '{"taskId":"%s","status":"success"}' % len(events)
            events.append(Event(await store.append(execution_id, name, data), name, data))
        return events

    old = await append("execution-start", "task-complete", "task-complete")
    for event in old:
        cache.event_frame(execution_id, event)
    assert b"2 of 2 tasks" in await cache.state_frame(execution_id, old)
    assert b"1 of 1 task" in await cache.state_frame(execution_id, old[:2])  # far behind: rebuilt
    store.clear()
    new = await append("task-complete")
    assert new[0].id > 1_000_000
    frame = await cache.state_frame(execution_id, new)
    assert b"1 of 1 task" in frame and f'data-last-event-id="{new[0].id}"'.encode() in frame


async def test_the_cache_frees_an_execution_with_its_last_stream_and_stays_within_its_bytes(
        settings):
    from django_sse_exec.render.fragments import FRAGMENT_OVERHEAD
    from django_sse_exec.render.html import FragmentCache
    from django_sse_exec.store.memory import MemoryStore
    from django_sse_exec.wire import Event

    settings.SSE_EXEC = {**settings.SSE_EXEC, "HISTORY_MAX_BYTES": 64 * 1024}
    cache = FragmentCache(MemoryStore())
    cache.acquire("a")
    cache.acquire("a")
    cache.acquire("b")
    for n in range(1, 401):  # ~1 KB a fragment (with its event): ~400 KB rendered
        for execution_id in ("a", "b"):
            data = '{"message":"%s"}' % ("x" * 400)
            assert cache.event_frame(execution_id, Event(n, "progress", data)).startswith(b"id: ")
    stats = cache.stats()
    assert stats["bytes"] <= 64 * 1024 and stats["kept"] >= 64 * 1024 // (1000 + FRAGMENT_OVERHEAD), stats
    assert stats["events"] == 800  # each rendered once
    cache.release("a")  # one of its two streams: kept
    assert cache.stats()["executions"] == 2
    cache.release("a")
    cache.release("b")
    assert cache.stats() == {**stats, "executions": 0, "kept": 0, "bytes": 0}
