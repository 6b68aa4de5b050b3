"""One channel-layer subscription per process, fanned out to every local stream.

A view that opened its own channel per connection exhausts Redis pools at a few
hundred clients and loses events past a channel's capacity. Instead each event
loop (in practice: each web process) has one Hub: ONE channel from
``new_channel()``, joined to the group of every execution that has a local
stream, ONE receive loop, and in-process fan-out to per-stream bounded buffers.
Each event is encoded to bytes once, here, and shared by all local streams.

Fan-out and catch-up are in :mod:`.fanout`; periodic work (repair sweep, heartbeats, group refresh, restore after a
channel-layer failure) is in :mod:`.maintenance`; ending streams on purpose in
:mod:`.slow_clients` and :mod:`.shutdown`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from ..conf import sse_settings
from ..layer.names import group_name
from ..layer.redis.direct import DirectSubscription, open_direct
from ..layer.redis.joins import group_add_many
from ..layer.redis.receive_logs import fold_receive_task_logs
from ..outages import report
from ..runtime.coalesce import Coalescer
from ..store import Store
from .fanout import Fanout, Group
from .subscriber import Subscriber

logger = logging.getLogger("django_sse_exec")

#: Channel-layer group leaves a hub runs at once (joins are batched: ``_joins``).
LAYER_CONCURRENCY = 16
#: Membership writes of new streams a hub runs at once.
STORE_CONCURRENCY = 32
class Hub:
    """The per-event-loop subscription and fan-out. Get it with :func:`~.running.get_hub`."""

    def __init__(self, layer: Any, store: Store, *,
                 services: Sequence[Callable[[Hub], Coroutine[Any, Any, None]]] = (),
                 on_start: Callable[[], None] | None = None) -> None:
        self.layer = layer
        self.store = store
        #: Loops started with the receive loop, each given the hub (its maintenance).
        self._services = tuple(services)
        #: Called once the hub starts (installs the shutdown signal hook).
        self._on_start = on_start
        self.channel: str | None = None
        #: The hub's own subscription to Redis pub/sub, when the layer allows one
        #: (:mod:`~django_sse_exec.layer.redis.direct`); None: the layer's receive().
        self.direct: DirectSubscription | None = None
        self.groups: dict[str, Group] = {}
        #: ``(execution_id, channel)`` of consumers registered through the public API.
        self.registered: set[tuple[str, str]] = set()
        #: Turns channel messages and log reads into frames for the local streams.
        self.fanout = Fanout(store, self.groups, self.spawn)
        self.lag = self.fanout.lag
        #: Set when the channel layer failed: maintenance restores groups and
        #: memberships (a restarted Redis may have lost them) once it answers.
        self.restore_needed = False
        #: Set once the process is shutting down: every stream ends, new ones at once.
        self.closing = False
        self._counter = itertools.count(1)
        self._tasks: list[asyncio.Task[Any]] = []
        self._start_lock = asyncio.Lock()
        # Bound concurrent group joins/leaves and membership writes: in a connect
        # storm each would otherwise take its own connection or queue past timeouts.
        self._layer_gate = asyncio.Semaphore(LAYER_CONCURRENCY)
        self._store_gate = asyncio.Semaphore(STORE_CONCURRENCY)
        #: Group joins of one loop turn, sent together (one ``SUBSCRIBE`` on pub/sub).
        self._joins: Coalescer[str] = Coalescer(self._join_groups)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Create the channel and start the receive and maintenance loops (once)."""
        if self.channel is not None:
            return
        async with self._start_lock:
            if self.channel is None:
                fold_receive_task_logs()  # channels_redis's, during an outage: one line
                self.direct = await open_direct(self.layer, self._dispatch,
                                                self.fanout.flush_touched, self._reconnected)
                if self.direct is not None:
                    self.fanout.touched = []
                    channel = f"sse_exec_hub.{uuid.uuid4().hex}"  # names the members only
                else:
                    channel = await self.layer.new_channel(prefix="sse_exec_hub.")
                    self.spawn(self._receive_loop(channel), "sse-hub-receive")
                if self._on_start is not None:
                    self._on_start()
                for service in self._services:
                    self.spawn(service(self), f"sse-hub-{service.__name__}")
                self.channel = channel

    def spawn(self, coro: Any, name: str | None = None) -> asyncio.Task[Any]:
        """Run ``coro`` as one of the hub's tasks (cancelled by :meth:`stop`)."""
        task = asyncio.ensure_future(coro)
        if name:
            task.set_name(name)
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)
        return task

    def _forget_task(self, task: asyncio.Task[Any]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    def retire(self) -> None:
        """Cancel the hub's loops without waiting (a newer hub replaces it)."""
        for task in list(self._tasks):
            task.cancel()
        self._close_direct()

    def _close_direct(self) -> None:
        if self.direct is not None:
            self.direct.close()
            self.direct = None
            self.fanout.touched = None

    async def stop(self) -> None:
        """Cancel the hub's loops (tests and shutdown)."""
        tasks, self._tasks = list(self._tasks), []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._close_direct()
        self.channel = None

    # -- streams -----------------------------------------------------------

    async def subscribe(self, execution_id: str, *more: str) -> Subscriber:
        """Register a local stream; when this returns, it receives every later event.

        ``more`` are further executions for a stream that carries several (see
        :mod:`django_sse_exec.streams.many.sets`); :meth:`join` adds executions later.
        """
        await self.start()
        sub = Subscriber(execution_id, f"{self.channel}#{next(self._counter)}",
                         int(sse_settings.CLIENT_BUFFER), int(sse_settings.CLIENT_BUFFER_BYTES))
        lifetime = sse_settings.MAX_STREAM_LIFETIME
        if lifetime:
            jitter = min(max(float(sse_settings.MAX_STREAM_LIFETIME_JITTER), 0.0), 1.0)
            lifetime = float(lifetime) * (1 - jitter * random.random())
            sub.expires_at = asyncio.get_running_loop().time() + lifetime
        if self.closing:
            sub.end_reason = "shutdown"
        try:
            await self.join(sub, (execution_id, *more))
        except BaseException:
            await asyncio.shield(self.unsubscribe(sub))
            raise
        return sub

    async def join(self, sub: Subscriber, execution_ids: Iterable[str]) -> None:
        """Make ``sub`` receive the events of ``execution_ids`` too, from now on.

        The groups of one loop turn are joined together and the memberships
        written together, so a stream of a hundred executions costs about the
        round trips of one. On failure the caller unsubscribes ``sub``.
        """
        new = list(dict.fromkeys(execution_ids))
        if sub.execution_ids:  # a feed's stream joining more
            have = set(sub.execution_ids)
            new = [e for e in new if e not in have]
        sub.execution_ids.extend(new)
        groups = []
        for execution_id in new:
            group = self.groups.get(execution_id)
            if group is None:
                group = self.groups[execution_id] = Group(execution_id)
            group.subscribers.add(sub)
            groups.append(group)
        if len(new) == 1:  # a single stream: no tasks to gather (a connect storm's CPU)
            await self._join_group(groups[0])
            await self._add_member(new[0], sub.member)
            return
        await asyncio.gather(*(self._join_group(group) for group in groups))
        await asyncio.gather(*(self._add_member(e, sub.member) for e in new))

    async def leave(self, sub: Subscriber, execution_ids: Iterable[str]) -> None:
        """Stop ``sub`` receiving the events of ``execution_ids`` (a feed's stream, for the
        executions that left its window); it stays subscribed to the others."""
        gone = [e for e in dict.fromkeys(execution_ids) if e in sub.execution_ids]
        for execution_id in gone:
            sub.execution_ids.remove(execution_id)
        await asyncio.gather(*(self._leave(sub, e) for e in gone))

    async def _join_group(self, group: Group) -> None:
        async with group.lock:
            if not group.joined:
                await self._joins.submit(group_name(group.execution_id))
                group.joined = True

    async def _add_member(self, execution_id: str, member: str) -> None:
        async with self._store_gate:
            await self.store.add_member(execution_id, member)

    async def unsubscribe(self, sub: Subscriber) -> None:
        """Remove a local stream; leave each group it was the last one of."""
        sub.close()
        if len(sub.execution_ids) == 1:
            await self._leave(sub, sub.execution_ids[0])
        else:
            await asyncio.gather(*(self._leave(sub, e) for e in sub.execution_ids))

    async def _leave(self, sub: Subscriber, execution_id: str) -> None:
        try:
            await self.store.remove_member(execution_id, sub.member)
        except Exception as exc:  # during an outage the entry expires by itself
            if not report(exc, "a stream's end"):
                logger.exception("could not remove stream membership of %s", execution_id)
        group = self.groups.get(execution_id)
        if group is None:
            return
        group.subscribers.discard(sub)
        async with group.lock:
            if group.joined and not group.subscribers:
                group.joined = False
                try:
                    if self.direct is not None:
                        self.direct.unsubscribe([group_name(execution_id)])
                    else:
                        async with self._layer_gate:
                            await self.layer.group_discard(group_name(execution_id), self.channel)
                except Exception as exc:
                    if not report(exc, "a stream's end"):
                        logger.exception("could not leave the group of %s", execution_id)
        if not group.subscribers and not group.joined and self.groups.get(execution_id) is group:
            del self.groups[execution_id]

    async def _join_groups(self, groups: list[str]) -> list[Any]:
        """Join the hub's channel to ``groups`` (the joins of one loop turn), together."""
        assert self.channel is not None  # subscribe() started the hub
        if self.direct is not None:
            await self.direct.subscribe(groups)
            return [None] * len(groups)
        return await group_add_many(self.layer, groups, self.channel)

    def local_count(self, execution_id: str | None = None) -> int:
        """Streams open in this hub (of one execution, or all: a multi stream counts once)."""
        if execution_id is not None:
            group = self.groups.get(execution_id)
            return len(group.subscribers) if group else 0
        return len(self.subscribers())

    def note_seen(self, execution_id: str, event_id: int) -> None:
        """Record that a stream read the log up to ``event_id`` (saves a repair read).

        Only the repair sweep and a first catch-up use it: other streams of the
        execution may not have those events yet, so messages are still fanned out.
        """
        group = self.groups.get(execution_id)
        if group is not None and event_id > group.known:
            group.known = event_id

    def group_count(self) -> int:
        """Executions this hub is subscribed to."""
        return len(self.groups)

    def subscribers(self) -> list[Subscriber]:
        """Every local stream, once (a multi stream is in several groups)."""
        return list(dict.fromkeys(sub for group in self.groups.values() for sub in group.subscribers))

    def end(self, sub: Subscriber, reason: str) -> None:
        """Make a stream end at its next step (it sends a retry hint and returns)."""
        if sub.end_reason is None:
            sub.end_reason = reason
            sub.wake()

    # -- consumers registered through the public API -----------------------

    def track(self, execution_id: str, channel_name: str) -> None:
        """Keep a registered consumer's membership alive with this hub's heartbeat."""
        self.registered.add((execution_id, channel_name))

    def untrack(self, execution_id: str, channel_name: str) -> None:
        self.registered.discard((execution_id, channel_name))

    def _dispatch(self, message: dict[str, Any]) -> None:
        try:
            self.fanout.dispatch(message)
        except Exception:
            logger.exception("bad message on the SSE hub's subscription: %r", message)

    def _reconnected(self) -> None:
        """The hub's own subscription is back: read what it missed from the logs, and
        restore the memberships (a Redis that restarted without its data lost them)."""
        self.restore_needed = True
        for execution_id in list(self.groups):
            self.fanout.catch_up(execution_id)

    async def _receive_loop(self, channel: str) -> None:
        delay = 0.1
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not report(exc, "the hub's channel-layer receive"):
                    logger.exception("channel layer receive failed; retrying in %.1fs", delay)
                self.restore_needed = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            try:
                self.fanout.dispatch(message)
            except Exception:
                logger.exception("bad message on the SSE hub channel: %r", message)

    async def rejoin_groups(self) -> None:
        """Join every joined group again (group memberships expire in the layer)."""
        if self.direct is not None:
            return  # its own subscriptions do not expire
        for execution_id, group in list(self.groups.items()):
            if group.joined:
                await self.layer.group_add(group_name(execution_id), self.channel)
