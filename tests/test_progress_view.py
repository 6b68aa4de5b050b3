"""The widget's refresh view (``.../executions/<id>/progress``) is bounded and never cached.

* Every answer (the widget, a refusal, 404, 405, 429, 503) says
  ``Cache-Control: no-store, private``: it embeds or depends on a token.
* It counts against the stream caps while it runs: an address at its cap gets
  429 (htmx: the refused widget, 200), as a stream would.
* Twenty requests at once on a full log (10,000 events of 1.5 KB on Redis) grow
  the server by tens of megabytes, not hundreds: the log is read page by page,
  the state keeps no event payloads, and two requests per process read and
  render at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from django_sse_exec.auth.policies import make_token
from django_sse_exec.execution.state import ExecutionState
from django_sse_exec.http.progress import MAX_CONCURRENT_REFRESHES
from tests.helpers import PrivateRedis
from tests.server import Server
from tests.sse import SSEClient


def progress_url(srv: Server, execution_id: str, token: str | None = None) -> str:
    token = make_token(execution_id, None, None) if token is None else token
    return f"{srv.base_url}/sse/executions/{execution_id}/progress?token={token}"


def assert_uncacheable(resp: httpx.Response) -> None:
    cache = resp.headers.get("cache-control", "")
    assert "no-store" in cache and "private" in cache, (resp.status_code, cache)


async def test_every_answer_is_uncacheable_and_the_widget_counts_right(server, execution_id):
    state = ExecutionState(execution_id, total=4)
    messages = [state.start()]
    for number in range(1, 4):
        messages += [state.task_start(f"t{number}"),
                     state.task_end(f"t{number}", error="boom" if number == 2 else None)]
    await server.asend(execution_id, *messages)
    async with httpx.AsyncClient(timeout=30) as http:
        widget = await http.get(progress_url(server, execution_id))
        assert widget.status_code == 200 and "3 of 4 tasks · 1 failed" in widget.text
        answers = [widget,
                   await http.get(progress_url(server, execution_id, "forged")),  # 403
                   await http.get(f"{server.base_url}/sse/executions/-bad/progress"),  # 404
                   await http.post(progress_url(server, execution_id))]  # 405
        assert [r.status_code for r in answers] == [200, 403, 404, 405]
        for resp in answers:
            assert_uncacheable(resp)


async def test_it_counts_against_the_stream_caps(make_server, execution_id):
    srv = make_server(sse_exec={"MAX_STREAMS_PER_ADDRESS": 1, "STREAM_CAP_RETRY_AFTER": 7})
    await srv.asend(execution_id, ("task-start", {"taskId": "a"}))
    url = progress_url(srv, execution_id)
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(url)).status_code == 200  # under the cap
        async with SSEClient(srv.base_url + f"/sse/executions/{execution_id}/events?token="
                             + make_token(execution_id, None, None)) as stream:
            assert stream.response is not None and stream.response.status_code == 200
            over = await http.get(url)
            assert over.status_code == 429 and over.headers["retry-after"] == "7"
            assert "too many streams from this address" in over.text and "sse-exec__body" not in over.text
            assert_uncacheable(over)
            htmx = await http.get(url, headers={"HX-Request": "true"})
            assert htmx.status_code == 200 and 'data-status="refused"' in htmx.text
        for _ in range(50):  # the stream's count is given back when it ends
            if (await http.get(url)).status_code == 200:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the refresh view stayed over the cap after the stream ended")


#: A full retained log: 10,000 task results (the default HISTORY_MAX_EVENTS) of ~1.5 KB.
EVENTS, PAYLOAD = 10_000, "x" * 1500
#: What twenty refreshes at once may add to the server (they added 345 MB when each
#: read the whole log and kept every event's payload, all twenty at once).
GROWTH_LIMIT = 100 * 1024 * 1024


@pytest.mark.alone
async def test_twenty_refreshes_at_once_on_a_full_log_stay_small(private_redis: PrivateRedis,
                                                                  execution_id: str) -> None:
    with Server("daphne", env={"TEST_LAYER": "pubsub", "REDIS_URL": private_redis.url}) as srv:
        for first in range(1, EVENTS + 1, 500):
            await srv.asend(execution_id, *(
                ("task-complete", {"taskId": f"t{n}", "taskTitle": f"Task {n}", "status": "success",
                                   "duration": 5, "progress": n, "total": EVENTS, "output": PAYLOAD})
                for n in range(first, first + 500)))
        url = progress_url(srv, execution_id)
        async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=50)) as http:
            first_answer = await http.get(url)  # warm up: templates, connections
            assert first_answer.status_code == 200
            assert f"{EVENTS} of {EVENTS} tasks" in first_answer.text
            before = peak = srv.rss()
            done = False

            async def watch() -> None:
                nonlocal peak
                while not done:
                    peak = max(peak, srv.rss())
                    await asyncio.sleep(0.05)

            watcher = asyncio.ensure_future(watch())
            started = time.monotonic()
            answers: list[Any] = await asyncio.gather(*(http.get(url) for _ in range(20)))
            took = time.monotonic() - started
            done = True
            await watcher
        assert {a.status_code for a in answers} == {200}
        assert all(a.text == first_answer.text for a in answers)
        growth = peak - before
        print(f"20 refreshes at once ({MAX_CONCURRENT_REFRESHES} at a time): {took:.1f} s, "
              f"peak RSS growth {growth / 1e6:.0f} MB")
        assert growth < GROWTH_LIMIT, f"{growth / 1e6:.0f} MB"
