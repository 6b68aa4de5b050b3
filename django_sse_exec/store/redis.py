"""Redis store: event logs and stream membership shared by every process.

The default when the channel layer is channels_redis (same Redis, one
configuration). Each execution's keys start with ``SSE_EXEC["KEY_PREFIX"]`` and
share a hash tag; their layout, the epoch marker and the scripts that keep
every log operation atomic are in :mod:`.scripts`. With several hosts in the
layer's config, all of an execution's keys live on one host, the one the layer
uses for the execution's group (:mod:`.hosts`); the epoch marker and the leases
exist once per host, for the executions of that host. Membership entries are a
sorted set scored by expiry on Redis's clock, so a process killed with
``kill -9`` stops being counted within ``member_ttl``.

redis.asyncio connections belong to the event loop that opened them, so the
store keeps one client per running loop. For synchronous senders (Celery
workers, sync views) :meth:`RedisStore.append_blocking` and
:meth:`RedisStore.close_blocking` run the same scripts on one thread-safe
blocking client per process. An append can also deliver the event to the
channel layer in the same script (``delivery``: a tail from
:mod:`django_sse_exec.layer.redis` and its arguments), so a send is one round
trip. Connection problems raise
:class:`~django_sse_exec.exceptions.StoreUnavailable` within a few seconds
(``CONNECT_TIMEOUT`` / ``SOCKET_TIMEOUT``, one retry) instead of hanging.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from redis.asyncio import Redis

from ..conf import sse_settings
from ..exceptions import ExecutionClosed, StoreUnavailable
from ..wire import STREAM_CLOSED, Event
from . import scripts
from .base import REPORT, Appended, LogSlice, Store
from .batcher import WriteBatcher
from .connection import Connections, replica_acks_from_settings
from .hosts import HostSpec, layer_hosts, layer_redis_url, redis_url_from_settings, shard_rule, store_hosts
from .redis_ops import RedisOperations

__all__ = ["RedisStore", "layer_redis_url", "redis_url_from_settings"]

T = TypeVar("T")

#: A delivery for the append script: (Lua tail, its arguments).
Delivery = tuple[str, list[Any]]

#: Memberships one heartbeat script call refreshes (Redis runs it as one step).
REFRESH_BATCH = 200


class RedisStore(RedisOperations, Store):
    """Event logs and membership in Redis, shared by every process that uses it."""

    #: Connections per event loop (and for all threads' blocking calls); more
    #: concurrent commands wait for one (up to ``SOCKET_TIMEOUT``) instead of failing.
    MAX_CONNECTIONS = 50

    def __init__(self, *, url: str | None = None, hosts: list[HostSpec] | None = None,
                 prefix: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Where the store's keys live; each execution on exactly one of them.
        self.hosts = [HostSpec(url=url)] if url else list(hosts or store_hosts())
        #: True when the store's hosts are the channel layer's (sends may then
        #: log and deliver in one script).
        self.shares_layer_redis = url is None and hosts is None and (
            not sse_settings.REDIS_URL or self._layer_urls() == [sse_settings.REDIS_URL])
        self.prefix = str(prefix or sse_settings.KEY_PREFIX)
        #: ``execution id -> index in hosts``, the channel layer's own choice.
        self.host_of = shard_rule(len(self.hosts))
        #: ``(replicas, timeout ms)`` for a WAIT after each append and close, or None.
        self.replica_acks = replica_acks_from_settings()
        self._connections: list[Connections] | None = None
        self._batchers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[int, WriteBatcher]] = weakref.WeakKeyDictionary()

    # -- plumbing ------------------------------------------------------------

    @property
    def connections(self) -> list[Connections]:
        """Clients of each host, in ``hosts`` order (made on first use)."""
        if self._connections is None:
            self._connections = [Connections(host, self.MAX_CONNECTIONS) for host in self.hosts]
        return self._connections

    @property
    def redis(self) -> Connections:
        """The first host's clients (the only host unless the layer has several)."""
        return self.connections[0]

    def on(self, execution_id: str) -> Connections:
        """The clients of the host that holds ``execution_id``'s keys."""
        return self.connections[self.host_of(execution_id)]

    @property
    def epoch(self) -> int | None:
        """The newest epoch this process saw on any host (None: none yet)."""
        seen = [c.epoch for c in self.connections if c.epoch is not None]
        return max(seen) if seen else None

    @staticmethod
    def _layer_urls() -> list[str] | None:
        """The URLs of the channel layer's hosts ('' for a Sentinel one), or None."""
        try:
            return [host.url for host in layer_hosts()]
        except ImproperlyConfigured:
            return None

    def client(self, execution_id: str | None = None) -> Redis:
        """The running loop's client of ``execution_id``'s host (default: the first)."""
        return (self.redis if execution_id is None else self.on(execution_id)).client()

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The :class:`StoreUnavailable` to raise for a connection error ``exc``."""
        return self.redis.unavailable(exc)

    async def on_each_host(self, items: Iterable[Any], execution_of: Callable[[Any], str],
                           work: Callable[[Connections, list[Any]], Awaitable[T]]) -> list[T]:
        """``work(host, its items)`` for each host holding some of ``items`` (the execution
        of an item is ``execution_of(item)``), concurrently; their results."""
        by_host: dict[int, list[Any]] = {}
        for item in items:
            by_host.setdefault(self.host_of(execution_of(item)), []).append(item)
        return list(await asyncio.gather(*(work(self.connections[index], batch)
                                           for index, batch in by_host.items())))

    def _batched(self, execution_id: str, *command: Any) -> asyncio.Future[Any]:
        """Queue a membership write or a read on the loop's :class:`WriteBatcher` of the host."""
        loop = asyncio.get_running_loop()
        index = self.host_of(execution_id)
        batchers = self._batchers.setdefault(loop, {})
        batcher = batchers.get(index)
        if batcher is None:
            batcher = batchers[index] = WriteBatcher(self.connections[index])
        return batcher.submit(*command)

    def key(self, execution_id: str, part: str) -> str:
        """The Redis key of one part (last, events, bytes, closed, members) of an execution."""
        return f"{self.prefix}:{{{execution_id}}}:{part}"

    def epoch_key(self) -> str:
        """The key of the store's epoch marker (see :mod:`.scripts`)."""
        return f"{self.prefix}:epoch"

    def _log_keys(self, execution_id: str) -> list[str]:
        """The keys of the log scripts (see :mod:`.scripts`)."""
        return [self.key(execution_id, "last"), self.key(execution_id, "closed"),
                self.key(execution_id, "events"), self.key(execution_id, "bytes"),
                self.epoch_key(), self.key(execution_id, "keys"),
                self.key(execution_id, "cancel"), f"{self.prefix}:activity",
                f"{self.prefix}:stalled"]

    @staticmethod
    def _seen(host: Connections) -> str:
        return "" if host.epoch is None else str(host.epoch)

    @staticmethod
    def _note_epoch(host: Connections, epoch: Any) -> None:
        value = int(epoch)
        if value >= 0 and (host.epoch is None or value > host.epoch):
            host.epoch = value

    def _decode(self, execution_id: str, entry: str) -> Event:
        id_text, event, data = entry.split("\n", 2)
        event_id = int(id_text)
        if event == STREAM_CLOSED:
            return self.closed_event(execution_id, event_id)
        return Event(event_id, event, data)

    # -- event log ---------------------------------------------------------

    async def append(self, execution_id: str, event: str, data: str,
                     delivery: Delivery | None = None, *, key: str | None = None,
                     kind: str = REPORT) -> Appended:
        """:meth:`Store.append`; ``delivery`` as in :meth:`append_blocking`."""
        host = self.on(execution_id)
        source, args = self._append_script(host, execution_id, event, data, delivery, key, kind)
        return self._appended(host, execution_id, await host.eval(
            source, self._log_keys(execution_id), args, self.replica_acks))

    def append_blocking(self, execution_id: str, event: str, data: str,
                        delivery: Delivery | None = None, *, key: str | None = None,
                        kind: str = REPORT) -> Appended:
        """:meth:`append` for synchronous callers, in the calling thread.

        With ``delivery`` (a Lua tail and its arguments, see
        :mod:`django_sse_exec.layer.redis`) the same script also delivers the
        event to the channel layer with the id it assigned: one round trip.
        """
        host = self.on(execution_id)
        source, args = self._append_script(host, execution_id, event, data, delivery, key, kind)
        return self._appended(host, execution_id, host.eval_blocking(
            source, self._log_keys(execution_id), args, self.replica_acks))

    def _append_script(self, host: Connections, execution_id: str, event: str, data: str,
                       delivery: Delivery | None, key: str | None,
                       kind: str) -> tuple[str, list[Any]]:
        args = [event, data, self.history_max_events, self.history_max_bytes,
                max(1, int(self.history_ttl)), self._seen(host), key or "", kind,
                self.send_keys_max, 1 if self.stall_after else 0, execution_id]
        if delivery is None:
            return scripts.APPEND, args
        tail, delivery_args = delivery
        return scripts.APPEND_BODY + tail + scripts.APPEND_RESULT, args + list(delivery_args)

    def _appended(self, host: Connections, execution_id: str, result: Any) -> Appended:
        event_id, epoch, flags = result
        self._note_epoch(host, epoch)
        appended = Appended.from_flags(int(event_id), int(flags))
        if appended < 0:
            raise ExecutionClosed(f"execution {execution_id!r} is closed",
                                  cancel_requested=appended.cancel_requested)
        return appended

    async def close(self, execution_id: str) -> tuple[int, bool]:
        host = self.on(execution_id)
        return self._closed(host, await host.eval(
            scripts.CLOSE, self._log_keys(execution_id), self._close_args(host, execution_id),
            self.replica_acks))

    def close_blocking(self, execution_id: str) -> tuple[int, bool]:
        """:meth:`close` for synchronous callers, in the calling thread."""
        host = self.on(execution_id)
        return self._closed(host, host.eval_blocking(
            scripts.CLOSE, self._log_keys(execution_id), self._close_args(host, execution_id),
            self.replica_acks))

    def _close_args(self, host: Connections, execution_id: str) -> list[Any]:
        return [self.history_max_events, self.history_max_bytes,
                max(1, int(self.closed_ttl)), self._seen(host), execution_id]

    def _closed(self, host: Connections, result: Any) -> tuple[int, bool]:
        event_id, first, epoch = result
        self._note_epoch(host, epoch)
        return int(event_id), bool(first)

    async def read(self, execution_id: str, after: int = 0, upto: int | None = None,
                   limit: int | None = None, max_bytes: int | None = None) -> LogSlice:
        host = self.on(execution_id)  # reads of one loop turn share a round trip (batcher)
        keys = self._log_keys(execution_id)
        last, closed, first, items, epoch = await self._batched(
            execution_id, "EVALSHA", self.redis.script(scripts.READ).sha, len(keys), *keys,
            int(after), -1 if upto is None else int(upto), -1 if limit is None else int(limit),
            2**62 if max_bytes is None else int(max_bytes))
        self._note_epoch(host, epoch)
        events = [self._decode(execution_id, entry) for entry in items]
        return LogSlice(events, int(last), int(first), bool(closed))

    async def last_ids(self, execution_ids: Iterable[str]) -> dict[str, int]:
        """:meth:`Store.last_ids` (one MGET per host, concurrently); also writes a
        host's new epoch if its marker vanished."""
        result: dict[str, int] = {}
        for part in await self.on_each_host(execution_ids, lambda e: e, self._last_ids_on):
            result.update(part)
        return result

    async def _last_ids_on(self, host: Connections, ids: list[str]) -> dict[str, int]:
        values = await host.run(host.client().mget(
            [self.key(e, "last") for e in ids] + [self.epoch_key()]))
        if values[-1] is None and host.epoch is not None:
            self._note_epoch(host, await host.eval(scripts.ENSURE_EPOCH, [self.epoch_key()],
                                                   [host.epoch]))
        elif values[-1] is not None:
            self._note_epoch(host, values[-1])
        return {e: int(v or 0) for e, v in zip(ids, values)}

    async def delete(self, execution_id: str) -> None:
        host = self.on(execution_id)
        keys = self._log_keys(execution_id)
        client = host.client()
        await host.run(client.delete(*keys[:4], *keys[5:7], self.key(execution_id, "members")))
        await host.run(client.zrem(keys[7], execution_id))
        await host.run(client.zrem(keys[8], execution_id))

    # -- membership --------------------------------------------------------

    def _ttl_ms(self) -> int:
        return max(1, int(self.member_ttl * 1000))

    def _member_keys(self, execution_id: str) -> list[str]:
        return [self.key(execution_id, "members"), *self._log_keys(execution_id)[:4]]

    async def add_member(self, execution_id: str, member: str) -> None:
        """Add or refresh a member; concurrent calls share one round trip (``WriteBatcher``)."""
        await self._batched(execution_id, "EVALSHA", self.redis.script(scripts.TOUCH_MEMBER).sha, 5,
                            *self._member_keys(execution_id), self._ttl_ms(), "", member)

    async def remove_member(self, execution_id: str, member: str) -> None:
        """Remove a member, batched like :meth:`add_member` (and after it, in call order)."""
        # Redis deletes a sorted set when its last member goes: no empty entries.
        await self._batched(execution_id, "ZREM", self.key(execution_id, "members"), member)

    async def refresh_members(self, members: Iterable[tuple[str, str]]) -> None:
        await self.on_each_host(members, lambda pair: pair[0], self._refresh_on)

    async def _refresh_on(self, host: Connections, members: list[tuple[str, str]]) -> None:
        """One script call per :data:`REFRESH_BATCH` memberships (not one per stream)."""
        for start in range(0, len(members), REFRESH_BATCH):
            some = members[start:start + REFRESH_BATCH]
            keys = [key for execution_id, _ in some for key in self._member_keys(execution_id)]
            await host.eval(scripts.TOUCH_MEMBER, keys, [self._ttl_ms(), "XX", *(m for _, m in some)])

    async def count_members(self, execution_id: str) -> int:
        return int(await self.on(execution_id).eval(
            scripts.COUNT, [self.key(execution_id, "members")], []))

    async def aclose(self) -> None:
        """Close the running loop's clients (other loops' clients close with their loop)."""
        for host in self.connections:
            await host.aclose()
