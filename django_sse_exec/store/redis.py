"""Redis store: event logs and stream membership shared by every process.

The default when the channel layer is channels_redis (same Redis, one
configuration). Each execution's keys start with ``SSE_EXEC["KEY_PREFIX"]`` and
share a hash tag; their layout, the epoch marker and the scripts that keep
every log operation atomic are in :mod:`.scripts`. Membership entries are a
sorted set scored by expiry on Redis's clock, so a process killed with
``kill -9`` stops being counted within ``member_ttl``.

redis.asyncio connections belong to the event loop that opened them, so the
store keeps one client per running loop. For synchronous senders (Celery
workers, sync views) :meth:`RedisStore.append_blocking` and
:meth:`RedisStore.close_blocking` run the same scripts on one thread-safe
blocking client per process. An append can also deliver the event to the
channel layer in the same script (``delivery``: a tail from
:mod:`django_sse_exec.redis_layer` and its arguments), so a send is one round
trip. Connection problems raise
:class:`~django_sse_exec.exceptions.StoreUnavailable` within a few seconds
(``CONNECT_TIMEOUT`` / ``SOCKET_TIMEOUT``, one retry) instead of hanging.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from redis.asyncio import Redis

from ..conf import sse_settings
from ..exceptions import ExecutionClosed, StoreUnavailable
from ..wire import STREAM_CLOSED, Event
from . import scripts
from .base import LogSlice, Store
from .batcher import WriteBatcher
from .connection import Connections, layer_redis_url, redis_url_from_settings
from .redis_ops import RedisOperations

__all__ = ["RedisStore", "layer_redis_url", "redis_url_from_settings"]

T = TypeVar("T")

#: A delivery for the append script: (Lua tail, its arguments).
Delivery = tuple[str, list[Any]]


class RedisStore(RedisOperations, Store):
    """Event logs and membership in Redis, shared by every process that uses it."""

    #: Connections per event loop (and for all threads' blocking calls); more
    #: concurrent commands wait for one (up to ``SOCKET_TIMEOUT``) instead of failing.
    MAX_CONNECTIONS = 50

    def __init__(self, *, url: str | None = None, prefix: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url or redis_url_from_settings()
        #: True when the store's Redis is the channel layer's (sends may then
        #: log and deliver in one script).
        self.shares_layer_redis = url is None and (
            not sse_settings.REDIS_URL or self._layer_url_or_none() == self.url)
        self.prefix = str(prefix or sse_settings.KEY_PREFIX)
        #: The last epoch this process saw in Redis (None: none yet). When the
        #: marker is gone, knowing it is what lets the next write start a new epoch.
        self.epoch: int | None = None
        self._connections: Connections | None = None
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WriteBatcher] = (
            weakref.WeakKeyDictionary())

    # -- plumbing ------------------------------------------------------------

    @property
    def redis(self) -> Connections:
        """This store's clients (made on first use, with ``MAX_CONNECTIONS`` per pool)."""
        if self._connections is None:
            self._connections = Connections(self.url, self.MAX_CONNECTIONS)
        return self._connections

    @staticmethod
    def _layer_url_or_none() -> str | None:
        try:
            return layer_redis_url()
        except ImproperlyConfigured:
            return None

    def client(self) -> Redis:
        """The Redis client of the running event loop (one pool per loop)."""
        return self.redis.client()

    def blocking_client(self) -> Any:
        """The process's thread-safe blocking client."""
        return self.redis.blocking_client()

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The :class:`StoreUnavailable` to raise for a connection error ``exc``."""
        return self.redis.unavailable(exc)

    def _script(self, source: str) -> Any:
        return self.redis.script(source)

    async def _eval(self, source: str, keys: list[str], args: list[Any]) -> Any:
        return await self.redis.eval(source, keys, args)

    def _eval_blocking(self, source: str, keys: list[str], args: list[Any]) -> Any:
        return self.redis.eval_blocking(source, keys, args)

    async def _run(self, awaitable: Awaitable[T]) -> T:
        return await self.redis.run(awaitable)

    def _batched(self, *command: Any) -> asyncio.Future[Any]:
        """Queue a membership write on the running loop's :class:`WriteBatcher`."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = WriteBatcher(self)
        return batcher.submit(*command)

    def key(self, execution_id: str, part: str) -> str:
        """The Redis key of one part (last, events, bytes, closed, members) of an execution."""
        return f"{self.prefix}:{{{execution_id}}}:{part}"

    def epoch_key(self) -> str:
        """The key of the store's epoch marker (see :mod:`.scripts`)."""
        return f"{self.prefix}:epoch"

    def _log_keys(self, execution_id: str) -> list[str]:
        return [self.key(execution_id, "last"), self.key(execution_id, "closed"),
                self.key(execution_id, "events"), self.key(execution_id, "bytes"),
                self.epoch_key()]

    def _seen(self) -> str:
        return "" if self.epoch is None else str(self.epoch)

    def _note_epoch(self, epoch: Any) -> None:
        value = int(epoch)
        if value >= 0 and (self.epoch is None or value > self.epoch):
            self.epoch = value

    def _decode(self, execution_id: str, entry: str) -> Event:
        id_text, event, data = entry.split("\n", 2)
        event_id = int(id_text)
        if event == STREAM_CLOSED:
            return self.closed_event(execution_id, event_id)
        return Event(event_id, event, data)

    # -- event log ---------------------------------------------------------

    async def append(self, execution_id: str, event: str, data: str,
                     delivery: Delivery | None = None) -> int:
        """:meth:`Store.append`; ``delivery`` as in :meth:`append_blocking`."""
        source, args = self._append_script(event, data, delivery)
        return self._appended(execution_id, await self._eval(
            source, self._log_keys(execution_id), args))

    def append_blocking(self, execution_id: str, event: str, data: str,
                        delivery: Delivery | None = None) -> int:
        """:meth:`append` for synchronous callers, in the calling thread.

        With ``delivery`` (a Lua tail and its arguments, see
        :mod:`django_sse_exec.redis_layer`) the same script also delivers the
        event to the channel layer with the id it assigned: one round trip.
        """
        source, args = self._append_script(event, data, delivery)
        return self._appended(execution_id, self._eval_blocking(
            source, self._log_keys(execution_id), args))

    def _append_script(self, event: str, data: str,
                       delivery: Delivery | None) -> tuple[str, list[Any]]:
        args = [event, data, self.history_max_events, self.history_max_bytes,
                max(1, int(self.history_ttl)), self._seen()]
        if delivery is None:
            return scripts.APPEND, args
        tail, delivery_args = delivery
        return scripts.APPEND_BODY + tail + scripts.APPEND_RESULT, args + list(delivery_args)

    def _appended(self, execution_id: str, result: Any) -> int:
        event_id, epoch = result
        self._note_epoch(epoch)
        if int(event_id) < 0:
            raise ExecutionClosed(f"execution {execution_id!r} is closed")
        return int(event_id)

    async def close(self, execution_id: str) -> tuple[int, bool]:
        return self._closed(await self._eval(
            scripts.CLOSE, self._log_keys(execution_id), self._close_args()))

    def close_blocking(self, execution_id: str) -> tuple[int, bool]:
        """:meth:`close` for synchronous callers, in the calling thread."""
        return self._closed(self._eval_blocking(
            scripts.CLOSE, self._log_keys(execution_id), self._close_args()))

    def _close_args(self) -> list[Any]:
        return [self.history_max_events, self.history_max_bytes,
                max(1, int(self.closed_ttl)), self._seen()]

    def _closed(self, result: Any) -> tuple[int, bool]:
        event_id, first, epoch = result
        self._note_epoch(epoch)
        return int(event_id), bool(first)

    async def read(self, execution_id: str, after: int = 0, upto: int | None = None,
                   limit: int | None = None, max_bytes: int | None = None) -> LogSlice:
        last, closed, first, items, epoch = await self._eval(
            scripts.READ, self._log_keys(execution_id),
            [int(after), -1 if upto is None else int(upto),
             -1 if limit is None else int(limit), 2**62 if max_bytes is None else int(max_bytes)])
        self._note_epoch(epoch)
        events = [self._decode(execution_id, entry) for entry in items]
        return LogSlice(events, int(last), int(first), bool(closed))

    async def last_ids(self, execution_ids: Iterable[str]) -> dict[str, int]:
        """:meth:`Store.last_ids`; also writes a new epoch if the marker vanished."""
        ids = list(execution_ids)
        values = await self._run(self.client().mget(
            [self.key(e, "last") for e in ids] + [self.epoch_key()]))
        if values[-1] is None and self.epoch is not None:
            self._note_epoch(await self._eval(scripts.ENSURE_EPOCH, [self.epoch_key()],
                                              [self.epoch]))
        elif values[-1] is not None:
            self._note_epoch(values[-1])
        return {e: int(v or 0) for e, v in zip(ids, values)}

    async def delete(self, execution_id: str) -> None:
        await self._run(self.client().delete(
            *self._log_keys(execution_id)[:4], self.key(execution_id, "members")))

    # -- membership --------------------------------------------------------

    def _ttl_ms(self) -> int:
        return max(1, int(self.member_ttl * 1000))

    def _member_keys(self, execution_id: str) -> list[str]:
        return [self.key(execution_id, "members"), *self._log_keys(execution_id)[:4]]

    async def add_member(self, execution_id: str, member: str) -> None:
        """Add or refresh a member; concurrent calls share one round trip (``WriteBatcher``)."""
        await self._batched("EVALSHA", self._script(scripts.TOUCH_MEMBER).sha, 5,
                            *self._member_keys(execution_id), member, self._ttl_ms(), "")

    async def remove_member(self, execution_id: str, member: str) -> None:
        """Remove a member, batched like :meth:`add_member` (and after it, in call order)."""
        # Redis deletes a sorted set when its last member goes: no empty entries.
        await self._batched("ZREM", self.key(execution_id, "members"), member)

    async def refresh_members(self, members: Iterable[tuple[str, str]]) -> None:
        members = list(members)
        if not members:
            return
        script, ttl = self._script(scripts.TOUCH_MEMBER), self._ttl_ms()
        # Make sure the script is cached first: EVALSHA in a pipeline cannot fall back.
        await self._run(self.client().script_load(scripts.TOUCH_MEMBER))
        async with self.client().pipeline(transaction=False) as pipe:
            for execution_id, member in members:
                pipe.evalsha(script.sha, 5, *self._member_keys(execution_id), member, ttl, "XX")
            await self._run(pipe.execute())

    async def count_members(self, execution_id: str) -> int:
        return int(await self._eval(scripts.COUNT, [self.key(execution_id, "members")], []))

    async def aclose(self) -> None:
        """Close the running loop's client (other loops' clients close with their loop)."""
        await self.redis.aclose()
