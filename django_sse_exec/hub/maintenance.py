"""The hub's periodic work, once every ``REPAIR_INTERVAL`` seconds.

* the slow-client guard (:func:`.slow_clients.sweep`);
* after a channel-layer failure, restoring groups and memberships
  (:func:`restore`): a Redis that restarted without its data forgot both;
* the repair sweep (:func:`repair`): compares each execution's last id in the
  log with what the hub delivered and catches up what the channel dropped
  (a layer's capacity, a reconnect), including a dropped *last* event;
* membership heartbeats every ``HEARTBEAT`` (a crashed process's entries
  expire instead), and re-joining groups every ``GROUP_REFRESH`` (channel
  layers expire group memberships);
* the jobs the app adds (:func:`add_job`): the check for expired leases.

Each step's failure is logged and retried at the next tick; none stops the loop.
A Redis outage is logged once, by :data:`~django_sse_exec.outages.tracker`, not at
every tick; while it lasts each tick first probes Redis (:meth:`Store.ping`), and
the first answer ends the outage (one line, with its duration).

Each step handles at most :data:`CHUNK` executions or streams per turn of the
event loop: a process serving thousands of executions would otherwise hold
every stream's events back while it compares thousands of ids, or packs and
parses thousands of heartbeats, in one go (measured: 10-30 ms once a second,
which was the p99 of the many-executions benchmark).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from ..conf import sse_settings
from ..outages import report, tracker
from ..store import Store
from . import slow_clients
from .hub import Hub

T = TypeVar("T")

logger = logging.getLogger("django_sse_exec")

#: Executions or streams a step handles before it lets the event loop run others.
CHUNK = 200

#: Further work every tick, each ``job(store)`` keeping its own pace: the app
#: adds the check for expired leases (:func:`~django_sse_exec.execution.leases.maintain`)
#: when Django starts, so the hub needs to know nothing of executions.
_jobs: list[Callable[[Store], Awaitable[None]]] = []


def add_job(job: Callable[[Store], Awaitable[None]]) -> None:
    """Run ``job(store)`` at every maintenance tick of every hub (once, however often added)."""
    if job not in _jobs:
        _jobs.append(job)


async def in_turns(items: list[T], size: int = CHUNK) -> AsyncIterator[list[T]]:
    """``items`` in lists of at most ``size``, letting the event loop run others between them."""
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        yield items[start:start + size]


async def run(hub: Hub) -> None:
    """The maintenance loop of one hub (runs until cancelled)."""
    loop = asyncio.get_running_loop()
    repair_every = float(sse_settings.REPAIR_INTERVAL)
    heartbeat_every = float(sse_settings.HEARTBEAT)
    refresh_every = float(sse_settings.GROUP_REFRESH)
    next_beat = loop.time() + heartbeat_every
    next_refresh = loop.time() + refresh_every
    while True:
        await asyncio.sleep(repair_every)
        try:
            async for streams in in_turns(hub.subscribers()):
                slow_clients.sweep(hub, loop.time(), streams)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("SSE hub guard failed; will retry")
        try:
            if tracker.current is not None:
                await hub.store.ping()
                tracker.recovered()
            if hub.restore_needed:
                await restore(hub)
            await repair(hub)
            for job in _jobs:
                await job(hub.store)
            now = loop.time()
            if now >= next_beat:
                next_beat = now + heartbeat_every
                await heartbeat(hub)
            if now >= next_refresh:
                next_refresh = now + refresh_every
                await hub.rejoin_groups()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not report(exc, "the hub's maintenance"):
                logger.exception("SSE hub maintenance failed; will retry")


async def repair(hub: Hub) -> None:
    """Catch up executions whose log is ahead of what the hub delivered.

    An event is in the log a moment before it arrives on the channel, so a log
    ahead of the hub is only suspect at first; the hub catches up (one paged
    read for all its streams of the execution) when the next sweep finds it
    still ahead, or at once when the channel is known to be behind.
    """
    async for execution_ids in in_turns(list(hub.groups)):
        await _repair(hub, execution_ids)


async def _repair(hub: Hub, execution_ids: list[str]) -> None:
    # What the hub had delivered when the read was sent: events fanned out while
    # it was on its way are newer than the ids it returns, not a sign of loss.
    seen_before = {e: group.seen for e in execution_ids if (group := hub.groups.get(e))}
    if not seen_before:
        return
    last_ids = await hub.store.last_ids(list(seen_before))
    lagging = hub.lag.lag > 0.05
    for execution_id, last_id in last_ids.items():
        group = hub.groups.get(execution_id)
        if group is None:
            continue
        delivered = max(group.seen, group.known)
        if 0 < last_id < seen_before[execution_id] <= group.seen:
            # The log went back: it was lost and recreated by a process that never
            # saw its epoch, so its ids restart low. Streams would take the new
            # events for repeats: end them; their reconnect is ahead of the log
            # and gets stream-reset with the new log.
            logger.warning("the log of execution %s is back at id %d after %d (its store "
                           "lost data); restarting its streams", execution_id, last_id,
                           group.seen)
            group.seen = group.known = group.suspect = 0
            for sub in list(group.subscribers):
                hub.end(sub, "reset")
        elif last_id <= delivered:
            group.suspect = 0
        elif group.suspect > delivered or lagging:
            group.suspect = 0
            hub.fanout.catch_up(execution_id, last_id)
        else:
            group.suspect = last_id


async def heartbeat(hub: Hub) -> None:
    """Push back the expiry of every local stream's and registered consumer's membership."""
    members = [(e, sub.member) for e, g in hub.groups.items() for sub in g.subscribers]
    members.extend(hub.registered)
    async for some in in_turns(members):
        await hub.store.refresh_members(some)


async def restore(hub: Hub) -> None:
    """After a channel-layer failure: re-join every group and re-add every membership.

    Events published meanwhile are caught up from the log by the repair sweep.
    A log that lost its data comes back under a new epoch (its ids start far
    past the old ones), so streams see a gap, read the log and send
    ``stream-reset`` with the new log.
    """
    await hub.rejoin_groups()
    for sub in hub.subscribers():
        for execution_id in sub.execution_ids:
            await hub.store.add_member(execution_id, sub.member)
    for execution_id, channel_name in list(hub.registered):
        await hub.store.add_member(execution_id, channel_name)
    hub.restore_needed = False
    logger.debug("channel layer is back: groups and memberships restored")
