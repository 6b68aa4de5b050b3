"""One channel-layer subscription per process, fanned out to every local stream.

A view that opened its own channel per connection exhausts Redis pools at a few
hundred clients and loses events past a channel's capacity. Instead each event
loop (in practice: each web process) has one Hub: ONE channel from
``new_channel()``, joined to the group of every execution that has a local
stream, ONE receive loop, and in-process fan-out to per-stream bounded buffers.
Each event is encoded to bytes once, here, and shared by all local streams.

Messages can be lost below us (a layer's capacity, a Redis reconnect); streams
repair gaps from the event log, and a periodic sweep compares the log's last ids
with what the hub has seen so that a dropped *last* event is caught up too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import signal
import threading
import weakref
from collections.abc import Callable
from typing import Any

from . import leases, metrics
from .conf import sse_settings
from .layers import get_layer, group_name
from .store import Store, get_store
from .subscriber import Subscriber
from .wire import Event, frame

logger = logging.getLogger("django_sse_exec")

#: Message ``type`` of events on the channel layer. A consumer registered with
#: ``register_sse_client`` receives them in a method named ``sse_exec_event``.
MESSAGE_TYPE = "sse_exec.event"

#: Channel-layer group joins/leaves a hub runs at once.
LAYER_CONCURRENCY = 16
#: Membership writes of new streams a hub runs at once.
STORE_CONCURRENCY = 32


class _Group:
    """Local state of one execution: its subscribers and whether we joined its group."""

    __slots__ = ("subscribers", "joined", "lock", "seen", "suspect")

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.joined = False
        self.lock = asyncio.Lock()
        self.seen = 0  # highest event id dispatched for this execution
        self.suspect = 0  # the log's last id when a sweep last found it ahead of `seen`


class Hub:
    """The per-event-loop subscription and fan-out. Get it with :func:`get_hub`."""

    def __init__(self, layer: Any, store: Store) -> None:
        self.layer = layer
        self.store = store
        self.channel: str | None = None
        self._groups: dict[str, _Group] = {}
        self._registered: set[tuple[str, str]] = set()
        self._counter = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()
        #: Bounds concurrent group joins and leaves: in a connect storm on many
        #: executions each concurrent join would take its own channel-layer
        #: connection (up to the layer's pool size), costing memory and Redis clients.
        self._layer_gate = asyncio.Semaphore(LAYER_CONCURRENCY)
        #: Likewise for membership writes: a storm of thousands of connects would
        #: otherwise queue on the store's connection pool past its timeout.
        self._store_gate = asyncio.Semaphore(STORE_CONCURRENCY)
        #: Set once the process is shutting down: every stream ends, new ones at once.
        self.closing = False
        #: Set when the channel layer failed: groups and memberships are restored
        #: (a restarted Redis may have lost them) once it answers again.
        self._restore_needed = False
        self._cleanups: set[asyncio.Future[None]] = set()

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Create the channel and start the receive and maintenance loops (once)."""
        if self.channel is not None:
            return
        async with self._start_lock:
            if self.channel is None:
                channel = await self.layer.new_channel(prefix="sse_exec_hub.")
                install_signal_hook()
                self._tasks = [
                    asyncio.create_task(self._receive_loop(channel), name="sse-hub-receive"),
                    asyncio.create_task(self._maintenance_loop(), name="sse-hub-maintenance"),
                ]
                self.channel = channel

    async def stop(self) -> None:
        """Cancel the hub's loops (tests and shutdown)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.channel = None

    # -- streams -----------------------------------------------------------

    async def subscribe(self, execution_id: str) -> Subscriber:
        """Register a local stream; when this returns, it receives every later event."""
        await self.start()
        sub = Subscriber(execution_id, f"{self.channel}#{next(self._counter)}",
                         int(sse_settings.CLIENT_BUFFER))
        lifetime = sse_settings.MAX_STREAM_LIFETIME
        if lifetime:
            jitter = min(max(float(sse_settings.MAX_STREAM_LIFETIME_JITTER), 0.0), 1.0)
            lifetime = float(lifetime) * (1 - jitter * random.random())
            sub.expires_at = asyncio.get_running_loop().time() + lifetime
        if self.closing:
            sub.end_reason = "shutdown"
        group = self._groups.get(execution_id)
        if group is None:
            group = self._groups[execution_id] = _Group()
        group.subscribers.add(sub)
        try:
            async with group.lock:
                if not group.joined:
                    async with self._layer_gate:
                        await self.layer.group_add(group_name(execution_id), self.channel)
                    group.joined = True
            async with self._store_gate:
                await self.store.add_member(execution_id, sub.member)
        except BaseException:
            await asyncio.shield(self.unsubscribe(sub))
            raise
        return sub

    async def unsubscribe(self, sub: Subscriber) -> None:
        """Remove a local stream; leave the group when it was the last one."""
        sub.close()
        execution_id = sub.execution_id
        try:
            await self.store.remove_member(execution_id, sub.member)
        except Exception:
            logger.exception("could not remove stream membership of %s", execution_id)
        group = self._groups.get(execution_id)
        if group is None:
            return
        group.subscribers.discard(sub)
        async with group.lock:
            if group.joined and not group.subscribers:
                group.joined = False
                try:
                    async with self._layer_gate:
                        await self.layer.group_discard(group_name(execution_id), self.channel)
                except Exception:
                    logger.exception("could not leave the group of %s", execution_id)
        if not group.subscribers and not group.joined and self._groups.get(execution_id) is group:
            del self._groups[execution_id]

    def local_count(self, execution_id: str | None = None) -> int:
        """Streams open in this hub (for one execution, or all)."""
        if execution_id is not None:
            group = self._groups.get(execution_id)
            return len(group.subscribers) if group else 0
        return sum(len(g.subscribers) for g in self._groups.values())

    def note_seen(self, execution_id: str, event_id: int) -> None:
        """Record that a stream read the log up to ``event_id`` (saves a repair read)."""
        group = self._groups.get(execution_id)
        if group is not None and event_id > group.seen:
            group.seen = event_id

    def group_count(self) -> int:
        """Executions this hub is subscribed to."""
        return len(self._groups)

    def subscribers(self) -> list[Subscriber]:
        """Every local stream."""
        return [sub for group in self._groups.values() for sub in group.subscribers]

    # -- ending streams ------------------------------------------------------

    def end(self, sub: Subscriber, reason: str) -> None:
        """Make a stream end at its next step (it sends a retry hint and returns)."""
        if sub.end_reason is None:
            sub.end_reason = reason
            sub._wake()

    def drop(self, sub: Subscriber, reason: str) -> None:
        """End a stream whose client does not take its bytes, without waiting on it.

        Where the connection can be measured it is aborted (daphne would
        otherwise hold the unsent bytes until the client goes); otherwise the task
        blocked in the write is cancelled. The client reconnects with its
        Last-Event-ID and replays what it missed.
        """
        if sub.end_reason == reason:
            return
        sub.end_reason = reason
        logger.warning("dropping a stream of execution %s: %s", sub.execution_id, reason)
        if sub.backlog is not None:
            sub.backlog.abort()
        elif sub.writing_since is not None and sub.task is not None:
            # The stream is suspended in a yield, so cancelling its task does not
            # reach its ``finally`` (the server drops the generator unclosed):
            # unsubscribe it here.
            sub.task.cancel()
            cleanup = asyncio.ensure_future(self.unsubscribe(sub))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
        else:
            sub._wake()

    def begin_shutdown(self, then: Callable[[], object] | None = None) -> None:
        """End every stream now (each sends a retry hint); call ``then`` once all ended.

        ``then`` (the server's own signal handler) is called at the latest after
        ``SHUTDOWN_GRACE`` seconds. A second call while shutting down calls it at once.
        """
        if self.closing:
            if then is not None:
                then()
            return
        self.closing = True
        subs = self.subscribers()
        logger.info("shutting down: ending %d streams", len(subs))
        for sub in subs:
            self.end(sub, "shutdown")
        if then is not None:
            task = asyncio.ensure_future(self._after_streams_end(then))
            self._tasks.append(task)

    async def _after_streams_end(self, then: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(sse_settings.SHUTDOWN_GRACE)
        while self.local_count() and loop.time() < deadline:
            await asyncio.sleep(0.02)
        # Let the servers flush the final chunks before they start closing sockets.
        await asyncio.sleep(0.05)
        then()

    def _guard_sweep(self, now: float) -> None:
        """Rotate streams past their lifetime; drop those whose client stopped reading."""
        write_timeout = float(sse_settings.WRITE_TIMEOUT)
        for sub in self.subscribers():
            if sub.end_reason is not None:
                continue
            if sub.stalled(now, write_timeout):
                self.drop(sub, f"client took no bytes for {write_timeout:g}s")
            elif sub.overflowed and sub.writing_since is not None:
                self.drop(sub, f"client is {sub.limit} events behind")
            elif sub.expires_at is not None and now >= sub.expires_at:
                self.end(sub, "lifetime")

    # -- consumers registered through the public API -----------------------

    def track(self, execution_id: str, channel_name: str) -> None:
        """Keep a registered consumer's membership alive with this hub's heartbeat."""
        self._registered.add((execution_id, channel_name))

    def untrack(self, execution_id: str, channel_name: str) -> None:
        self._registered.discard((execution_id, channel_name))

    # -- loops ---------------------------------------------------------------

    def dispatch(self, message: dict[str, Any]) -> None:
        """Fan one channel-layer message out to the local streams of its execution."""
        group = self._groups.get(message.get("execution_id", ""))
        if group is None or not group.subscribers:
            return
        event_id = int(message["id"])
        item = (event_id, message["event"], frame(Event(event_id, message["event"], message["data"])))
        if event_id > group.seen:
            group.seen = event_id
        for sub in group.subscribers:
            sub.push(item)
        metrics.hub_dispatched(message)

    async def _receive_loop(self, channel: str) -> None:
        delay = 0.1
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("channel layer receive failed; retrying in %.1fs", delay)
                self._restore_needed = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            try:
                self.dispatch(message)
            except Exception:
                logger.exception("bad message on the SSE hub channel: %r", message)

    async def _maintenance_loop(self) -> None:
        loop = asyncio.get_running_loop()
        repair_every = float(sse_settings.REPAIR_INTERVAL)
        heartbeat_every = float(sse_settings.HEARTBEAT)
        refresh_every = float(sse_settings.GROUP_REFRESH)
        next_beat = loop.time() + heartbeat_every
        next_refresh = loop.time() + refresh_every
        while True:
            await asyncio.sleep(repair_every)
            try:
                self._guard_sweep(loop.time())
            except Exception:
                logger.exception("SSE hub guard failed; will retry")
            try:
                if self._restore_needed:
                    await self._restore()
                await self._repair_sweep()
                await leases.maintain(self.store)
                now = loop.time()
                if now >= next_beat:
                    next_beat = now + heartbeat_every
                    await self._heartbeat()
                if now >= next_refresh:
                    next_refresh = now + refresh_every
                    await self._rejoin_groups()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("SSE hub maintenance failed; will retry")

    async def _repair_sweep(self) -> None:
        """Wake streams whose execution's log is ahead of what the hub received.

        An event is in the log a moment before it arrives on the channel, so a
        log ahead of the hub is only suspect at first; the streams are told to
        catch up (each reads the log) when the next sweep finds it still ahead.
        Waking every stream of a busy execution on a race would cost one log
        read per stream.
        """
        if not self._groups:
            return
        last_ids = await self.store.last_ids(list(self._groups))
        for execution_id, last_id in last_ids.items():
            group = self._groups.get(execution_id)
            if group is None:
                continue
            if last_id <= group.seen:
                group.suspect = 0
            elif group.suspect > group.seen:
                group.seen = last_id
                group.suspect = 0
                for sub in group.subscribers:
                    sub.catch_up(last_id)
            else:
                group.suspect = last_id

    async def _heartbeat(self) -> None:
        members = [(g_id, sub.member) for g_id, g in self._groups.items() for sub in g.subscribers]
        members.extend(self._registered)
        if members:
            await self.store.refresh_members(members)

    async def _restore(self) -> None:
        """After a channel-layer failure: re-join every group and re-add every membership.

        A Redis that restarted without persistence has forgotten both; a stream
        must not stop receiving or being counted because of it. Events published
        meanwhile are caught up from the log by the repair sweep.

        Such a Redis has also forgotten the logs: an execution whose log is now
        behind what its streams were sent restarts its ids at 1, which those
        streams would take for repeats. They are ended with a retry hint; the
        reconnect finds the client ahead of the log and gets ``stream-reset``
        and the new log.
        """
        await self._rejoin_groups()
        for sub in self.subscribers():
            await self.store.add_member(sub.execution_id, sub.member)
        for execution_id, channel_name in list(self._registered):
            await self.store.add_member(execution_id, channel_name)
        last_ids = await self.store.last_ids(list(self._groups))
        for execution_id, last_id in last_ids.items():
            group = self._groups.get(execution_id)
            if group is not None and last_id < group.seen:
                logger.warning("the log of execution %s is back at id %d after %d (its store "
                               "lost data); restarting its streams", execution_id, last_id,
                               group.seen)
                group.seen = last_id
                for sub in list(group.subscribers):
                    self.end(sub, "reset")
        self._restore_needed = False
        logger.info("channel layer is back: groups and memberships restored")

    async def _rejoin_groups(self) -> None:
        for execution_id, group in list(self._groups.items()):
            if group.joined:
                await self.layer.group_add(group_name(execution_id), self.channel)


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.store is not get_store() or hub.layer is not get_layer():
        if hub is not None:  # settings changed (tests): retire the old hub's loops
            for task in hub._tasks:
                task.cancel()
        hub = _hubs[loop] = Hub(get_layer(), get_store())
    return hub


def install_signal_hook() -> None:
    """On SIGTERM/SIGINT, end the running loop's streams before the server's handler runs.

    Servers cancel or cut open streams when they shut down; ending them first
    (with a retry hint) lets clients reconnect elsewhere at once and lets the
    server exit without waiting. Only the main thread's loop can own signals,
    and only Python-level handlers (daphne's, uvicorn's) are wrapped; a
    ``SHUTDOWN_GRACE`` of 0 disables this.
    """
    if float(sse_settings.SHUTDOWN_GRACE) <= 0 or threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous) or previous is signal.default_int_handler \
                or getattr(previous, "sse_exec_hook", False):
            continue

        def handler(number: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
            loop.call_soon_threadsafe(_shut_down, loop, lambda: previous(number, frame))

        handler.sse_exec_hook = True  # type: ignore[attr-defined]
        signal.signal(signum, handler)


def _shut_down(loop: asyncio.AbstractEventLoop, then: Callable[[], object]) -> None:
    hub = _hubs.get(loop)
    if hub is None:
        then()
    else:
        hub.begin_shutdown(then)


def _after_fork() -> None:
    _hubs.clear()


os.register_at_fork(after_in_child=_after_fork)
