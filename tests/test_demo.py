"""The demo's HTTP endpoints and its simulated executor, through a real daphne.

The executor must speak the orchestrator's vocabulary with exactly its payload
fields, fail tasks and runs, and cancel for real (nothing after
``execution-cancelled`` but ``stream-closed``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from example_project.demo.executor import Simulation, run_blocking
from tests.helpers import names, wait_for_value
from tests.sse import SSEClient, SSEEvent

START_KEYS = {"executionId", "totalTasks", "startTime"}
TASK_START_KEYS = {"taskId", "taskTitle", "progress", "total"}
TASK_END_KEYS = {"taskId", "taskTitle", "status", "duration", "progress", "total"}
SUMMARY_KEYS = {"executionId", "status", "successful", "failed", "cancelled", "completed",
                "total", "totalDuration", "results"}


#: One browser's cookies per server: the demo shows a browser only what it started.
JARS: dict[int, httpx.Cookies] = {}


async def api(server: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A request from "the browser" of this module (its cookies persist across calls)."""
    cookies = JARS.setdefault(server.port, httpx.Cookies())
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30, cookies=cookies) as client:
        resp = await client.request(method, path, **kwargs)
        JARS[server.port] = client.cookies
    return resp


async def start(server: Any, **body: Any) -> dict[str, Any]:
    resp = await api(server, "POST", "/demo/executions", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def check_task_events(events: list[SSEEvent], total: int) -> list[dict[str, Any]]:
    """Task events alternate start/end with the documented fields; return the end payloads."""
    ended = []
    for index, (begin, end) in enumerate(zip(events[0::2], events[1::2]), start=1):
        assert begin.event == "task-start"
        assert set(begin.json) == TASK_START_KEYS
        assert begin.json == {"taskId": f"task-{index}", "taskTitle": f"Task {index}",
                              "progress": index - 1, "total": total}
        assert end.event in ("task-complete", "task-fail")
        failed = end.event == "task-fail"
        assert set(end.json) == TASK_END_KEYS | ({"error"} if failed else set())
        assert end.json["status"] == ("failed" if failed else "success")
        assert end.json["taskId"] == f"task-{index}"
        assert end.json["progress"] == index and end.json["total"] == total
        assert isinstance(end.json["duration"], int) and end.json["duration"] >= 0
        ended.append(end.json)
    return ended


async def test_execution_streams_the_full_vocabulary(server):
    started = await start(server, tasks=4, delayMs=30)
    execution_id = started["executionId"]
    async with SSEClient(server.base_url + started["streamUrl"]) as client:
        events = await client.read_until_closed(timeout=30)
    assert names(events) == (["execution-start"] + ["task-start", "task-complete"] * 4
                             + ["execution-complete", "stream-closed"])
    assert [e.int_id for e in events] == list(range(1, len(events) + 1))
    first = events[0].json
    assert set(first) == START_KEYS
    assert first["executionId"] == execution_id and first["totalTasks"] == 4
    assert abs(first["startTime"] / 1000 - time.time()) < 60
    results = check_task_events(events[1:-2], total=4)
    summary = events[-2].json
    assert set(summary) == SUMMARY_KEYS
    assert summary == {**summary, "executionId": execution_id, "status": "success",
                       "successful": 4, "failed": 0, "cancelled": 0, "completed": 4, "total": 4}
    assert summary["results"] == results
    assert summary["totalDuration"] >= sum(r["duration"] for r in results)


async def test_failed_tasks_make_a_failed_run(server):
    started = await start(server, tasks=3, delayMs=10, failRate=1)
    async with SSEClient(server.base_url + started["streamUrl"]) as client:
        events = await client.read_until_closed(timeout=30)
    results = check_task_events(events[1:-2], total=3)
    assert [r["status"] for r in results] == ["failed"] * 3
    assert all(r["error"] for r in results)
    summary = events[-2].json
    assert events[-2].event == "execution-complete"  # a failed run still completes
    assert (summary["status"], summary["successful"], summary["failed"]) == ("failed", 0, 3)


async def test_cancel_ends_the_run_with_nothing_after_it(server):
    started = await start(server, tasks=40, delayMs=150)
    execution_id = started["executionId"]
    url = server.base_url + started["streamUrl"]
    async with SSEClient(url) as client:
        await client.wait_for(lambda ev: "task-complete" in names(ev), timeout=30)
        resp = await api(server, "POST", started["cancelUrl"])
        assert resp.status_code == 202, resp.text
        events = await client.read_until_closed(timeout=30)
    assert names(events)[-2:] == ["execution-cancelled", "stream-closed"]
    assert "execution-cancel-requested" in names(events)
    ended = [e.json for e in events if e.event in ("task-complete", "task-fail")]
    summary = events[-2].json
    assert set(summary) == SUMMARY_KEYS
    assert summary["status"] == "cancelled"
    assert summary["completed"] == len(ended) == len(summary["results"])
    assert summary["cancelled"] == 40 - len(ended) > 0
    assert summary["successful"] + summary["failed"] == len(ended)
    # The task really stopped: well past the next task's end, the log still ends there.
    await asyncio.sleep(0.6)
    async with SSEClient(url) as replay:
        again = await replay.read_until_closed(timeout=30)
    assert [(e.id, e.event) for e in again] == [(e.id, e.event) for e in events]
    detail = (await api(server, "GET", f"/demo/executions/{execution_id}")).json()
    assert detail["status"] == "cancelled"
    assert "cancelUrl" not in detail  # ended: nothing to cancel
    again_cancel = await api(server, "POST", started["cancelUrl"])
    assert again_cancel.status_code == 409


async def test_cancel_needs_the_signed_url(server):
    started = await start(server, tasks=30, delayMs=100)
    execution_id = started["executionId"]
    unsigned = await api(server, "POST", f"/sse/executions/{execution_id}/cancel")
    assert unsigned.status_code == 403
    assert (await api(server, "POST", "/sse/executions/bad!id/cancel")).status_code == 404
    assert (await api(server, "GET", started["cancelUrl"])).status_code == 405
    assert (await api(server, "GET", "/demo/executions/bad!id")).status_code == 404
    detail = (await api(server, "GET", f"/demo/executions/{execution_id}")).json()
    assert detail["cancelUrl"].startswith(f"/sse/executions/{execution_id}/cancel?token=")
    assert (await api(server, "POST", detail["cancelUrl"])).status_code == 202


async def test_detail_counts_the_viewers(server):
    started = await start(server, tasks=100, delayMs=200)
    execution_id = started["executionId"]
    url = server.base_url + started["streamUrl"]

    async def viewers(expected: int) -> bool:
        detail = (await api(server, "GET", f"/demo/executions/{execution_id}")).json()
        return detail["viewers"] == expected

    try:
        async with SSEClient(url):
            await wait_for_value(lambda: viewers(1))
            async with SSEClient(url) as two:
                await two.read_chunk()
                await wait_for_value(lambda: viewers(2))
            await wait_for_value(lambda: viewers(1))
        await wait_for_value(lambda: viewers(0))
    finally:
        await api(server, "POST", started["cancelUrl"])


async def test_detail_of_an_execution_started_elsewhere_gives_no_stream_url(server, execution_id):
    """An execution this browser did not start (sent by another process, guessed or
    listed): no status, no token — knowing its id is not enough."""
    server.send(execution_id, ("step", {"n": 1}))
    resp = await api(server, "GET", f"/demo/executions/{execution_id}")
    assert resp.status_code == 404
    assert "streamUrl" not in resp.json() and "token" not in resp.text


async def test_recent_executions_newest_first(server):
    first = (await start(server, tasks=1, delayMs=0))["executionId"]
    second = (await start(server, tasks=2, delayMs=0))["executionId"]

    async def listed() -> list[dict[str, Any]] | None:
        items = (await api(server, "GET", "/demo/executions")).json()["executions"]
        ours = [i for i in items if i["executionId"] in (first, second)]
        return ours if all(i["status"] == "success" for i in ours) and len(ours) == 2 else None

    ours = await wait_for_value(listed)
    assert [i["executionId"] for i in ours] == [second, first]
    assert ours[0]["total"] == ours[0]["completed"] == 2


@pytest.mark.parametrize("body, status", [
    (b"not json", 400),
    (b"[1, 2]", 400),
])
async def test_start_rejects_bad_bodies(server, body, status):
    resp = await api(server, "POST", "/demo/executions", content=body,
                     headers={"Content-Type": "application/json"})
    assert resp.status_code == status
    assert "error" in resp.json()


async def test_start_refuses_out_of_range_values(server):
    for body in ({"tasks": -5}, {"tasks": 201}, {"delayMs": "soon"}, {"failRate": "often"},
                 {"tasks": True}, {"failRate": 1.5}):
        resp = await api(server, "POST", "/demo/executions", json=body)
        assert resp.status_code == 400, (body, resp.text)
    assert (await api(server, "PUT", "/demo/executions")).status_code == 405


async def test_dashboard_page_and_client_script(server, execution_id):
    page = await api(server, "GET", "/")
    assert page.status_code == 200
    assert "/static/django_sse_exec/sse-exec.js" in page.text
    assert 'data-stream-url=""' in page.text
    mine = (await start(server, tasks=1, delayMs=0))["executionId"]
    opened = await api(server, "GET", f"/?execution={mine}")
    assert f'data-stream-url="/sse/executions/{mine}/events?token=' in opened.text
    foreign = await api(server, "GET", f"/?execution={execution_id}")
    assert 'data-stream-url=""' in foreign.text and "not started from this browser" in foreign.text
    bad = await api(server, "GET", "/?execution=%3Cscript%3E")
    assert "not valid" in bad.text and "<script>" not in bad.text  # never echoed back
    script = await api(server, "GET", "/static/django_sse_exec/sse-exec.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "SSEExec" in script.text
    assert (await api(server, "GET", "/static/demo/dashboard.js")).status_code == 200


def test_blocking_runner_reports_with_the_sync_helpers(execution_id):
    sent: list[tuple[str, int]] = []
    sim = Simulation(execution_id, tasks=3, delay_ms=0, fail_tasks=frozenset({2}))
    run_blocking(sim, on_sent=lambda event, event_id: sent.append((event, event_id)))
    assert sent == [("execution-start", 1), ("task-start", 2), ("task-complete", 3),
                    ("task-start", 4), ("task-fail", 5), ("task-start", 6),
                    ("task-complete", 7), ("execution-complete", 8)]
    assert sim.status == "failed" and sim.summary()["failed"] == 1


@pytest.mark.parametrize("args", [["--id", "bad id"], ["--tasks", "0"], ["--delay-ms", "-1"]])
def test_simulate_command_rejects_bad_arguments(args):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError):
        call_command("simulate_execution", *args)
