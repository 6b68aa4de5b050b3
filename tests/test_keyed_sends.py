"""Sends that a retry does not repeat, end to end: keyed sends from a real sender process
through daphne (sync and async, both Redis layers: a repeated key is neither logged nor
delivered), and a real Celery task retried after counting half its rows, whose second
attempt shows its progress only past where the first got."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.helpers import names
from tests.sse import SSEClient
from tests.test_cancel_workers import worker  # noqa: F401  (fixture)
from tests.test_celery_reporting import on_redis, setup, sig, web  # noqa: F401
from tests.test_multiprocess import LAYERS, redis_setup  # noqa: F401  (fixture)
from tests.workers import run_sender

pytestmark = pytest.mark.asyncio

SENDER = """
import asyncio
from django_sse_exec import asend_sse_event, send_sse_event
e = {execution_id!r}
ids = [send_sse_event(e, "a", {{"n": 1}}, key="k1"), send_sse_event(e, "a", {{"n": 2}}, key="k1"),
       send_sse_event(e, "b", {{"n": 3}})]
async def again():
    return [await asend_sse_event(e, "a", {{"n": 4}}, key="k1"),
            await asend_sse_event(e, "c", {{"n": 5}}, key="k2")]
ids += asyncio.run(again())
ids.append(send_sse_event(e, "c", {{"n": 6}}, key="k2"))
send_sse_event(e, "end", {{"n": 7}})
emit(ids)
"""


@pytest.mark.parametrize("layer", LAYERS)
async def test_a_repeated_key_is_neither_logged_nor_delivered(layer, redis_setup, make_server,
                                                              url_for, execution_id):
    env = redis_setup(layer)
    srv = make_server("daphne", env=env)
    async with SSEClient(url_for(srv, execution_id)) as client:
        await client.read_chunk()
        ids = await asyncio.to_thread(run_sender, env, SENDER.format(execution_id=execution_id))
        events = await client.wait_for(lambda got: "end" in names(got))
    assert ids == [1, 1, 2, 1, 3, 3]  # a repeated key answers its first event's id
    assert [(e.event, e.int_id, e.json["n"]) for e in events] == [
        ("a", 1, 1), ("b", 2, 3), ("c", 3, 5), ("end", 4, 7)]
    async with SSEClient(url_for(srv, execution_id)) as replay:
        again = await replay.wait_for(lambda got: len(got) >= 4)
    assert [e.int_id for e in again] == [1, 2, 3, 4]


async def test_a_celery_retry_shows_its_progress_once(worker, web, on_redis,  # noqa: F811
                                                      execution_id):
    from django_sse_exec.celery import start_execution

    await asyncio.to_thread(start_execution, sig(worker, "retry_rows", 6, 3), execution_id)
    async with SSEClient(web.base_url + f"/sse/executions/{execution_id}/events?token="
                         + token_of(execution_id)) as client:
        events = await client.read_until_closed(timeout=60)
    kinds = names(events)
    assert kinds[:2] == ["execution-start", "task-start"], kinds
    assert kinds.count("task-retry") == 1 and kinds.count("task-start") == 2
    assert kinds[-3:] == ["task-complete", "execution-complete", "stream-closed"]
    shown: list[tuple[int, Any]] = [(e.json["progress"], e.json.get("message")) for e in events
                                    if e.event == "progress"]
    values = [value for value, _ in shown]
    assert values == sorted(set(values)) and values[-1] == 6, shown  # never the same row twice
    second = kinds.index("task-start", 2)
    assert all(e.json["progress"] > 3 for e in events[second:] if e.event == "progress")
    assert events[second].json["attempt"] == 2 and events[second].json["retry"] is True
    assert json.loads(events[-2].data)["status"] == "success"


def token_of(execution_id: str) -> str:
    from django_sse_exec.auth.policies import make_token

    return make_token(execution_id)
