"""The hub's periodic work on a process serving many executions.

In process, on the embedded default (memory store, in-memory channel layer): the
sweep, the guard and the heartbeats take turns with the streams (a sweep over
thousands of executions in one step held every stream's events back for 10-30
ms once a second), and the repair sweep still finds a log ahead of the hub in
its last chunk.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from django_sse_exec.hub import maintenance
from django_sse_exec.hub.running import get_hub

STREAMS = 5 * maintenance.CHUNK


async def _open(count: int) -> tuple[list[str], list]:
    hub = get_hub()
    run = uuid.uuid4().hex[:8]
    ids = [f"turns-{run}-{i}" for i in range(count)]
    subs = await asyncio.gather(*(hub.subscribe(e) for e in ids))
    return ids, list(subs)


async def _turns_during(work) -> int:
    """Loop turns another task got while ``work`` ran."""
    turns = 0
    done = False

    async def tick() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(0)
    turns = 0
    try:
        await work
    finally:
        done = True
        await ticker
    return turns


@pytest.mark.asyncio
@pytest.mark.parametrize("step", ["repair", "heartbeat"])
async def test_periodic_work_lets_streams_run_between_chunks(step):
    hub = get_hub()
    ids, subs = await _open(STREAMS)
    try:
        turns = await _turns_during(getattr(maintenance, step)(hub))
        # One turn at least between consecutive chunks of CHUNK executions.
        assert turns >= STREAMS // maintenance.CHUNK - 1
    finally:
        await asyncio.gather(*(hub.unsubscribe(s) for s in subs))


@pytest.mark.asyncio
async def test_the_repair_sweep_catches_up_an_execution_in_its_last_chunk():
    hub = get_hub()
    ids, subs = await _open(STREAMS)
    last, stream = ids[-1], subs[-1]
    try:
        # Logged but never published (a message the channel dropped).
        event_id = await hub.store.append(last, "tick", '{"n":1}')
        await maintenance.repair(hub)  # first sweep: only suspect
        await maintenance.repair(hub)  # still ahead: catch up from the log
        for _ in range(100):
            if stream.pending():
                break
            await asyncio.sleep(0.01)
        batches, _, _ = stream.take()
        assert [(b.execution_id, [e[0] for e in b.events]) for b in batches] == [(last, [event_id])]
    finally:
        await asyncio.gather(*(hub.unsubscribe(s) for s in subs))
