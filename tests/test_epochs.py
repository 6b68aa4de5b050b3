"""Log epochs through a real daphne: a Last-Event-ID from a lost log is never read
as a position in the new one.

Each test stops its clients, makes the private Redis lose everything, writes a
new log for the same execution and closes it, and only then reconnects with the
old Last-Event-ID (so the order of reconnect, new sends and close is fixed): the
client must get ``stream-reset`` and the whole new log, never a 204 and never a
silent skip.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import names, wait_until
from tests.loadclient import StreamClient
from tests.workers import redis_env, run_sender

EPOCH_SPAN = 1_000_000


async def stream_once(url: str, last_event_id: int | None) -> StreamClient:
    """Stream as a browser would (reconnecting: the first use of a connection pooled
    before the Redis restart may fail, and the stream then ends with a retry hint)
    until the stream ends for good (``stream-closed`` or 204)."""
    client = StreamClient(url, last_event_id=last_event_id, max_retry_ms=200)
    await asyncio.wait_for(client.run(), 30)
    assert client.finished
    return client


async def old_log_then_loss(make_server, url_for, execution_id, private_redis):
    env = redis_env(private_redis.url)
    srv = make_server("daphne", env=env, sse_exec={"KEEPALIVE": 60})
    assert await srv.asend(execution_id, *[("step", {"n": n}) for n in range(5)]) == [1, 2, 3, 4, 5]
    first = StreamClient(url_for(srv, execution_id), reconnect=False)
    task = asyncio.ensure_future(first.run())
    await wait_until(lambda: len(first.ids) == 5, 30, what="the old log")
    first.stop()
    await task
    assert first.ids == [1, 2, 3, 4, 5] and first.connects[-1].status == 200
    private_redis.stop()  # killed: nothing saved
    private_redis.start()
    return srv, env


def check_reset_then_whole_log(client: StreamClient, new_ids: list[int]) -> None:
    received = names(client.events)
    assert client.connects[-1].status == 200, client.connects
    assert received[0] == "stream-reset", received
    # (a parser keeps the last id for an event without one: skip the reset itself)
    ids = [int(e.id) for e in client.events if e.event != "stream-reset"]
    assert ids == new_ids, (ids, new_ids)
    assert received[-1] == "stream-closed"


@pytest.mark.asyncio
async def test_reconnect_after_the_new_log_closed_gets_reset_not_204(
        make_server, url_for, execution_id, private_redis):
    """The new log is written by a process that never saw the old one (ids restart
    at 1) and is closed below the client's id: a reset and the whole log, not 204."""
    srv, env = await old_log_then_loss(make_server, url_for, execution_id, private_redis)
    ids = run_sender(env, f"""
        ids = [sse.send_sse_event({execution_id!r}, "step", {{"n": n}}) for n in range(3)]
        emit(ids + [sse.close_sse_connections({execution_id!r})])
    """)
    assert ids == [1, 2, 3, 4]
    client = await stream_once(url_for(srv, execution_id), 5)
    check_reset_then_whole_log(client, ids)
    again = await stream_once(url_for(srv, execution_id), ids[-1])
    assert again.connects[-1].status == 204


@pytest.mark.asyncio
@pytest.mark.parametrize("count", [3, 8])
async def test_a_new_epoch_never_overlaps_the_old_ids(
        make_server, url_for, execution_id, private_redis, count):
    """The new log is written by the web process that knew the old epoch: its ids
    start past any old one, so even a log that grew past the client's id (8 > 5)
    is recognised as new."""
    srv, _ = await old_log_then_loss(make_server, url_for, execution_id, private_redis)
    ids = await srv.asend(execution_id, *[("step", {"n": n}) for n in range(count)])
    ids.append(srv.close(execution_id))
    base = ids[0] - 1
    assert base >= EPOCH_SPAN and base % EPOCH_SPAN == 0
    assert ids == [base + n for n in range(1, count + 2)]
    client = await stream_once(url_for(srv, execution_id), 5)
    check_reset_then_whole_log(client, ids)
    assert [e.event for e in client.events].count("stream-reset") == 1
    again = await stream_once(url_for(srv, execution_id), ids[-1])
    assert again.connects[-1].status == 204
