"""The example project's demo execution streams the whole vocabulary to a client."""

from __future__ import annotations

import httpx
import pytest

from tests.sse import SSEClient

pytestmark = pytest.mark.asyncio


async def test_demo_execution_streams_full_vocabulary(server):
    resp = httpx.post(server.base_url + "/demo/executions", json={"tasks": 3, "delayMs": 50})
    assert resp.status_code == 201
    body = resp.json()
    async with SSEClient(server.base_url + body["streamUrl"]) as client:
        events = await client.read_until_closed(timeout=20)
    names = [e.event for e in events]
    assert names[0] == "execution-start"
    assert names.count("task-start") == 3
    assert names.count("task-complete") + names.count("task-fail") == 3
    assert names[-2:] == ["execution-complete", "stream-closed"]
    assert [e.int_id for e in events] == list(range(1, len(events) + 1))
    start = events[0].json
    assert start["executionId"] == body["executionId"] and start["totalTasks"] == 3
    summary = events[-2].json
    assert summary["total"] == 3 and summary["completed"] == 3
    assert len(summary["results"]) == 3
