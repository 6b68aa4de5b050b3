"""The same stream served by uvicorn: in one process, and on Redis fed by a sender process."""

from __future__ import annotations

import asyncio

import pytest

from tests.sse import SSEClient
from tests.workers import delete_keys, redis_env, run_sender

pytestmark = pytest.mark.asyncio


async def test_stream_under_uvicorn(make_server, url_for, execution_id):
    srv = make_server("uvicorn", sse_exec={"KEEPALIVE": 0.5})
    async with SSEClient(url_for(srv, execution_id)) as client:
        assert client.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        first = await client.read_chunk()
        assert first.startswith(b"retry: ")
        await client.wait_for(lambda ev: "keepalive" in client.parser.comments, timeout=5)
        ids = await srv.asend(execution_id, *[("step", {"n": i}) for i in range(10)])
        await asyncio.to_thread(srv.close, execution_id)
        events = await client.read_until_closed()
    assert [e.int_id for e in events] == [*ids, 11]
    assert [e.json["n"] for e in events[:-1]] == list(range(10))
    assert events[-1].event == "stream-closed"


@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
async def test_redis_stream_from_a_sender_process(kind, requires_redis, make_server, url_for,
                                                  execution_id):
    env = redis_env(requires_redis, "pubsub")
    try:
        srv = make_server(kind, env=env)
        async with SSEClient(url_for(srv, execution_id)) as client:
            await client.read_chunk()
            await asyncio.to_thread(run_sender, env, f"""
                for i in range(50):
                    sse.send_sse_event({execution_id!r}, "step", {{"n": i}})
                sse.close_sse_connections({execution_id!r})
            """)
            events = await client.read_until_closed(timeout=30)
        assert [e.int_id for e in events] == list(range(1, 52))
        assert [e.json["n"] for e in events[:-1]] == list(range(50))
    finally:
        delete_keys(requires_redis, env["TEST_KEY_PREFIX"])
