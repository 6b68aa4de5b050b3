"""Redis store: event logs and stream membership shared by every process.

The default when the channel layer is channels_redis (same Redis, one
configuration). Each execution has four keys, all starting with
``SSE_EXEC["KEY_PREFIX"]`` and sharing a hash tag (so a Redis Cluster keeps them
on one node)::

    <prefix>:{<execution id>}:last     INCR counter: the last id assigned
    <prefix>:{<execution id>}:events   LIST of "<id>\\n<event>\\n<data>", trimmed to
                                       HISTORY_MAX_EVENTS (ids are contiguous)
    <prefix>:{<execution id>}:closed   set once closed (holds the stream-closed id)
    <prefix>:{<execution id>}:members  ZSET member -> expiry (ms, Redis clock)

Appends and closes are Lua scripts, so ids are assigned atomically however many
processes send, and every log key gets ``HISTORY_TTL`` (``CLOSED_TTL`` once
closed): Redis never grows without end. Membership entries expire
``member_ttl`` (3 heartbeats) after their last refresh, by Redis's clock, so a
process killed with ``kill -9`` stops being counted within that interval.

redis.asyncio connections belong to the event loop that opened them, so the
store keeps one client per running loop. For synchronous senders (Celery
workers, sync views) :meth:`RedisStore.append_blocking` and
:meth:`RedisStore.close_blocking` run the same scripts on one thread-safe
blocking client per process; ``append_blocking`` can also deliver the event to
the channel layer in the same script, so a sync send costs one round trip. Connection problems raise
:class:`~django_sse_exec.exceptions.StoreUnavailable` within a few seconds
(``CONNECT_TIMEOUT`` / ``SOCKET_TIMEOUT``, one retry) instead of hanging.

Membership writes (:meth:`RedisStore.add_member`, :meth:`RedisStore.remove_member`)
of concurrent streams are coalesced: one per stream connect would otherwise be a
round trip each, see :class:`_WriteBatcher`.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis as sync_redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.retry import Retry as BlockingRetry

from .. import metrics
from ..conf import sse_settings
from ..exceptions import ExecutionClosed, StoreUnavailable
from ..wire import STREAM_CLOSED, Event
from .base import ExecutionSummary, LogSlice, Store

T = TypeVar("T")

# KEYS: last, closed, events. ARGV: event, data, max events, ttl seconds.
# Returns the new id, or -1 when the execution is closed.
_APPEND_BODY = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local id = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[3], id .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[2])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
"""
_APPEND = _APPEND_BODY + "return id\n"
# The same, then PUBLISH to channel ARGV[5] the message ARGV[6] .. id .. ARGV[7]
# (the id as a big-endian uint64, which msgpack reads as an integer): logging
# and publishing in one round trip, in one atomic step.
_APPEND_PUBLISH = _APPEND_BODY + """
redis.call('PUBLISH', ARGV[5], ARGV[6] .. struct.pack('>I8', id) .. ARGV[7])
return id
"""
# The same, then what channels_redis's RedisChannelLayer.group_send does, for the
# group whose key is ARGV[5]: drop members older than group_expiry (ARGV[11]),
# and add to each member channel's sorted set (key: layer prefix ARGV[6] + the
# channel's non-local name), unless it holds capacity (ARGV[9]) messages, the
# message ARGV[7] .. id .. ARGV[8] .. <msgpack list of its channels>, scored by
# the time, expiring after ARGV[10] seconds.
_APPEND_DELIVER = _APPEND_BODY + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', ARGV[5], 0, tonumber(t[1]) - tonumber(ARGV[11]))
local keys, channels = {}, {}
for _, name in ipairs(redis.call('ZRANGE', ARGV[5], 0, -1)) do
  local bang = string.find(name, '!', 1, true)
  local key = ARGV[6] .. (bang and string.sub(name, 1, bang) or name)
  if channels[key] == nil then
    channels[key] = {}
    keys[#keys + 1] = key
  end
  table.insert(channels[key], name)
end
local body = ARGV[7] .. struct.pack('>I8', id) .. ARGV[8]
for _, key in ipairs(keys) do
  redis.call('ZREMRANGEBYSCORE', key, 0, tonumber(t[1]) - tonumber(ARGV[10]))
  if redis.call('ZCARD', key) < tonumber(ARGV[9]) then
    redis.call('ZADD', key, now, body .. cmsgpack.pack(channels[key]))
    redis.call('EXPIRE', key, ARGV[10])
  end
end
return id
"""
_DELIVERY_SCRIPTS = {"pubsub": _APPEND_PUBLISH, "core": _APPEND_DELIVER}

# KEYS: last, closed, events. ARGV: max events, closed ttl seconds.
# Returns {id of stream-closed, 1 if this call closed it}.
_CLOSE = """
local done = redis.call('GET', KEYS[2])
if done then return {tonumber(done), 0} end
local id = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[3], id .. '\\n""" + STREAM_CLOSED + """\\n')
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[1]), -1)
redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return {id, 1}
"""

# KEYS: last, closed, events. ARGV: after, upto (-1: to the end).
# Returns {last id, closed 0/1, first retained id, {entries...}} in one round trip.
_READ = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local closed = redis.call('EXISTS', KEYS[2])
local first = last - redis.call('LLEN', KEYS[3]) + 1
local upto = tonumber(ARGV[2])
if upto < 0 or upto > last then upto = last end
local start = math.max(tonumber(ARGV[1]) + 1, first) - first
local stop = upto - first
local items = {}
if stop >= start then items = redis.call('LRANGE', KEYS[3], start, stop) end
return {last, closed, first, items}
"""

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# KEYS: members. ARGV: member, ttl ms, 'XX' to refresh only existing members or ''.
_TOUCH_MEMBER = _NOW_MS + """
if ARGV[3] == 'XX' and redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS: members. Drops expired entries, returns how many are left.
_COUNT = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

_UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, asyncio.TimeoutError,
                OSError)


def redis_url_from_settings() -> str:
    """``SSE_EXEC["REDIS_URL"]``, else the URL of the channel layer's first host."""
    if sse_settings.REDIS_URL:
        return str(sse_settings.REDIS_URL)
    return layer_redis_url()


def layer_redis_url() -> str:
    """The Redis URL of the channel layer's first host (channels_redis's default if none)."""
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    config = layers.get(sse_settings.CHANNEL_LAYER, {}).get("CONFIG", {}) or {}
    hosts = config.get("hosts") or [("localhost", 6379)]
    host: Any = hosts[0]
    if isinstance(host, dict):
        if "address" in host:
            host = host["address"]
        elif "host" in host:
            host = (host["host"], host.get("port", 6379))
        else:
            raise ImproperlyConfigured(
                "SSE_EXEC['REDIS_URL'] is not set and the channel layer's first host "
                f"({hosts[0]!r}) gives no address; set SSE_EXEC['REDIS_URL']"
            )
    if isinstance(host, str):
        return host
    if isinstance(host, (tuple, list)) and len(host) == 2:
        return f"redis://{host[0]}:{int(host[1])}/0"
    raise ImproperlyConfigured(f"cannot derive a Redis URL from channel layer host {host!r}")


@dataclass(eq=False)
class _WriteBatcher:
    """Membership writes of one event loop, sent as one pipelined round trip per batch.

    A write is queued with a future for its caller; the first write of a batch
    schedules a task that sends the queue on the loop's next iteration, so every
    write made in the same tick goes along, and the writes queued while a batch
    is in flight form the next batch. Order is kept (one FIFO, one connection per
    batch): a stream's remove is never sent before its add. Each caller gets its
    own result or its own exception (:class:`StoreUnavailable` when Redis is
    unreachable, as for a lone write); a caller cancelled before its batch is
    sent is left out of it.
    """

    store: RedisStore
    queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def submit(self, *command: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.queue.append((command, future))
        if self.task is None:
            self.task = asyncio.ensure_future(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                await self._send([(c, f) for c, f in batch if not f.done()])
        finally:
            self.task = None
            for _, future in self.queue:  # only left when this task was cancelled
                future.cancel()
            self.queue = []

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        if not batch:
            return
        try:
            results = await self._execute([command for command, _ in batch])
            if any(isinstance(r, redis_errors.NoScriptError) for r in results):
                # Redis lost its script cache (restart, SCRIPT FLUSH): load it and
                # resend the batch (sent again in order, it leaves the same state).
                await self.store.client().script_load(_TOUCH_MEMBER)
                results = await self._execute([command for command, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(self.store._unavailable(exc)
                                         if isinstance(exc, _UNAVAILABLE) else exc)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        async with self.store.client().pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)


class RedisStore(Store):
    """Event logs and membership in Redis, shared by every process that uses it."""

    #: Seconds to open a connection before :class:`StoreUnavailable`.
    CONNECT_TIMEOUT = 3.0
    #: Seconds to wait for a reply before :class:`StoreUnavailable`.
    SOCKET_TIMEOUT = 5.0
    #: Connections per event loop (and for all threads' blocking calls); more
    #: concurrent commands wait for one (up to ``SOCKET_TIMEOUT``) instead of failing.
    MAX_CONNECTIONS = 50

    def __init__(self, *, url: str | None = None, prefix: str | None = None,
                 **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.url = url or redis_url_from_settings()
        #: True when the store's Redis is the channel layer's (sends may then
        #: log and publish in one script, see :meth:`append_blocking`).
        self.shares_layer_redis = url is None and (
            not sse_settings.REDIS_URL or self._layer_url_or_none() == self.url)
        self.prefix = str(prefix or sse_settings.KEY_PREFIX)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._scripts: dict[str, Any] = {}
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _WriteBatcher] = (
            weakref.WeakKeyDictionary()
        )
        self._blocking: sync_redis.Redis | None = None
        self._blocking_lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------

    def client(self) -> Redis:
        """The Redis client of the running event loop (one pool per loop)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            pool = BlockingConnectionPool.from_url(
                self.url, retry=Retry(ConstantBackoff(0.05), 1), **self._pool_options())
            client = self._clients[loop] = Redis.from_pool(pool)
        return client

    def _pool_options(self) -> dict[str, Any]:
        """Bounded pools and timeouts shared by the async and the blocking clients."""
        return {
            "max_connections": self.MAX_CONNECTIONS,
            "timeout": self.SOCKET_TIMEOUT,
            "socket_connect_timeout": self.CONNECT_TIMEOUT,
            "socket_timeout": self.SOCKET_TIMEOUT,
            "decode_responses": True,
        }

    @staticmethod
    def _layer_url_or_none() -> str | None:
        try:
            return layer_redis_url()
        except ImproperlyConfigured:
            return None

    def blocking_client(self) -> sync_redis.Redis:
        """The process's blocking client (thread-safe; redis-py renews its pool after fork)."""
        if self._blocking is None:
            with self._blocking_lock:
                if self._blocking is None:
                    # Blocking pool: more threads than connections wait for one.
                    pool = sync_redis.BlockingConnectionPool.from_url(
                        self.url, retry=BlockingRetry(ConstantBackoff(0.05), 1),
                        **self._pool_options())
                    self._blocking = sync_redis.Redis(connection_pool=pool)
        return self._blocking

    def _eval_blocking(self, source: str, keys: list[str], args: list[Any]) -> Any:
        client = self.blocking_client()
        try:
            try:
                return client.evalsha(self._script(source).sha, len(keys), *keys, *args)
            except redis_errors.NoScriptError:
                client.script_load(source)
                return client.evalsha(self._script(source).sha, len(keys), *keys, *args)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    def _script(self, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            # The Script object only caches the SHA; it runs on whichever client is given.
            script = self._scripts[source] = Redis().register_script(source)
        return script

    async def _run(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        metrics.store_error()
        error = StoreUnavailable(f"Redis at {self._safe_url()} is unavailable: {exc}")
        error.__cause__ = exc
        return error

    def _batched(self, *command: Any) -> asyncio.Future[Any]:
        """Queue a membership write on the running loop's :class:`_WriteBatcher`."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = _WriteBatcher(self)
        return batcher.submit(*command)

    async def _eval(self, source: str, keys: list[str], args: list[Any]) -> Any:
        return await self._run(self._script(source)(keys=keys, args=args, client=self.client()))

    def _safe_url(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"

    def key(self, execution_id: str, part: str) -> str:
        """The Redis key of one part (last, events, closed, members) of an execution."""
        return f"{self.prefix}:{{{execution_id}}}:{part}"

    def _log_keys(self, execution_id: str) -> list[str]:
        return [self.key(execution_id, "last"), self.key(execution_id, "closed"),
                self.key(execution_id, "events")]

    def _decode(self, execution_id: str, entry: str) -> Event:
        id_text, event, data = entry.split("\n", 2)
        event_id = int(id_text)
        if event == STREAM_CLOSED:
            return self.closed_event(execution_id, event_id)
        return Event(event_id, event, data)

    # -- event log ---------------------------------------------------------

    async def append(self, execution_id: str, event: str, data: str,
                     publish: tuple[str, list[Any]] | None = None) -> int:
        """:meth:`Store.append`; ``publish`` as in :meth:`append_blocking`."""
        script, args = self._append_script(event, data, publish)
        return self._appended(execution_id, await self._eval(
            script, self._log_keys(execution_id), args))

    def append_blocking(self, execution_id: str, event: str, data: str,
                        publish: tuple[str, list[Any]] | None = None) -> int:
        """:meth:`append` for synchronous callers, in the calling thread.

        With ``publish`` (a plan from :func:`django_sse_exec.layers.publish_template`)
        the same script also delivers the event to the channel layer, with the id
        it assigned: one round trip, one atomic step.
        """
        script, args = self._append_script(event, data, publish)
        return self._appended(execution_id, self._eval_blocking(
            script, self._log_keys(execution_id), args))

    def _append_script(self, event: str, data: str,
                       publish: tuple[str, list[Any]] | None) -> tuple[str, list[Any]]:
        args = [event, data, self.history_max_events, max(1, int(self.history_ttl))]
        if publish is None:
            return _APPEND, args
        kind, publish_args = publish
        return _DELIVERY_SCRIPTS[kind], args + list(publish_args)

    @staticmethod
    def _appended(execution_id: str, result: Any) -> int:
        event_id = int(result)
        if event_id < 0:
            raise ExecutionClosed(f"execution {execution_id!r} is closed")
        return event_id

    async def close(self, execution_id: str) -> tuple[int, bool]:
        event_id, first = await self._eval(_CLOSE, self._log_keys(execution_id),
                                           self._close_args())
        return int(event_id), bool(first)

    def close_blocking(self, execution_id: str) -> tuple[int, bool]:
        """:meth:`close` for synchronous callers, in the calling thread."""
        event_id, first = self._eval_blocking(_CLOSE, self._log_keys(execution_id),
                                              self._close_args())
        return int(event_id), bool(first)

    def _close_args(self) -> list[Any]:
        return [self.history_max_events, max(1, int(self.closed_ttl))]

    async def read(self, execution_id: str, after: int = 0, upto: int | None = None) -> LogSlice:
        last, closed, first, items = await self._eval(
            _READ, self._log_keys(execution_id), [int(after), -1 if upto is None else int(upto)],
        )
        events = [self._decode(execution_id, entry) for entry in items]
        return LogSlice(events, int(last), int(first), bool(closed))

    async def last_ids(self, execution_ids: Iterable[str]) -> dict[str, int]:
        ids = list(execution_ids)
        if not ids:
            return {}
        values = await self._run(self.client().mget([self.key(e, "last") for e in ids]))
        return {e: int(v or 0) for e, v in zip(ids, values)}

    async def delete(self, execution_id: str) -> None:
        await self._run(self.client().delete(
            *self._log_keys(execution_id), self.key(execution_id, "members")))

    # -- membership --------------------------------------------------------

    def _ttl_ms(self) -> int:
        return max(1, int(self.member_ttl * 1000))

    async def add_member(self, execution_id: str, member: str) -> None:
        """Add or refresh a member; concurrent calls share one round trip (``_WriteBatcher``)."""
        await self._batched("EVALSHA", self._script(_TOUCH_MEMBER).sha, 1,
                            self.key(execution_id, "members"), member, self._ttl_ms(), "")

    async def remove_member(self, execution_id: str, member: str) -> None:
        """Remove a member, batched like :meth:`add_member` (and after it, in call order)."""
        # Redis deletes a sorted set when its last member goes: no empty entries.
        await self._batched("ZREM", self.key(execution_id, "members"), member)

    async def refresh_members(self, members: Iterable[tuple[str, str]]) -> None:
        members = list(members)
        if not members:
            return
        script, ttl = self._script(_TOUCH_MEMBER), self._ttl_ms()
        # Make sure the script is cached first: EVALSHA in a pipeline cannot fall back.
        await self._run(self.client().script_load(_TOUCH_MEMBER))
        async with self.client().pipeline(transaction=False) as pipe:
            for execution_id, member in members:
                pipe.evalsha(script.sha, 1, self.key(execution_id, "members"), member, ttl, "XX")
            await self._run(pipe.execute())

    async def count_members(self, execution_id: str) -> int:
        return int(await self._eval(_COUNT, [self.key(execution_id, "members")], []))

    async def aclose(self) -> None:
        """Close the running loop's client (other loops' clients close with their loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()
        if self._blocking is not None:
            self._blocking.close()
            self._blocking = None

    # -- operations: leases and listing -------------------------------------
    #
    # Leases live in one sorted set, <prefix>:leases (execution id -> expiry, ms
    # of Redis's clock). The listing walks the keyspace with SCAN over the
    # executions' "last" keys: no index to maintain on the send path, and a page
    # costs a few SCAN round trips plus one pipelined summary per execution.

    def _leases_key(self) -> str:
        return f"{self.prefix}:leases"

    async def hold_lease(self, execution_id: str, ttl: float) -> bool:
        if await self._run(self.client().exists(self.key(execution_id, "closed"))):
            await self.release_lease(execution_id)
            return False
        await self._eval(_HOLD_LEASE, [self._leases_key()],
                         [execution_id, max(1, int(ttl * 1000))])
        return True

    async def release_lease(self, execution_id: str) -> None:
        await self._run(self.client().zrem(self._leases_key(), execution_id))

    async def claim_expired_leases(self, grace: float, limit: int = 100) -> list[str]:
        return list(await self._eval(_CLAIM_LEASES, [self._leases_key()],
                                     [max(1, int(grace * 1000)), int(limit)]))

    async def list_executions(self, cursor: str = "0", count: int = 50,
                              search: str = "") -> tuple[list[ExecutionSummary], str]:
        pattern = self.key(f"*{_glob_escape(search)}*" if search else "*", "last")
        head, tail = len(self.prefix) + 2, -len("}:last")
        ids: list[str] = []
        position = int(cursor) if str(cursor).isdigit() else 0
        # An execution has about four keys: ask for about half a page per step, and
        # widen the step while the keyspace around us holds few matches.
        step = 2 * count
        while True:
            position, keys = await self._run(self.client().scan(
                position, match=pattern, count=step))
            ids.extend(key[head:tail] for key in keys)
            if position == 0 or len(ids) >= count:
                break
            if len(ids) < count // 2:
                step = min(step * 2, 10_000)
        return await self._summaries(list(dict.fromkeys(ids))), str(position)

    async def describe_execution(self, execution_id: str) -> ExecutionSummary | None:
        summaries = await self._summaries([execution_id])
        return summaries[0] if summaries else None

    async def _summaries(self, ids: list[str]) -> list[ExecutionSummary]:
        if not ids:
            return []
        client = self.client()
        await self._run(client.script_load(_SUMMARY))
        sha = self._script(_SUMMARY).sha
        async with client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.zmscore(self._leases_key(), ids)
            for execution_id in ids:
                pipe.evalsha(sha, 4, *self._log_keys(execution_id),
                             self.key(execution_id, "members"))
            now, expiries, *rows = await self._run(pipe.execute())
        now_ms = now[0] * 1000 + now[1] // 1000
        result = []
        for execution_id, expiry, row in zip(ids, expiries, rows):
            last, closed, pttl, last_event, start, viewers = row
            if not int(last):
                continue  # expired between the scan and the summary
            ttl = self.closed_ttl if int(closed) else self.history_ttl
            idle = max(0.0, ttl - int(pttl) / 1000) if int(pttl) >= 0 else None
            result.append(ExecutionSummary(
                execution_id, int(last), bool(int(closed)), int(viewers), idle,
                last_event or "", start or None, expiry is not None and float(expiry) > now_ms))
        return result


def _glob_escape(text: str) -> str:
    """``text`` with SCAN's glob characters escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# KEYS: leases. ARGV: execution id, ttl ms. Expiry by Redis's clock.
_HOLD_LEASE = _NOW_MS + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# KEYS: leases. ARGV: grace ms, limit. Returns the expired ids, each pushed
# `grace` ahead in the same atomic step (so exactly one caller gets each).
_CLAIM_LEASES = _NOW_MS + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id) end
return ids
"""

# KEYS: last, closed, events, members (one hash slot). Returns {last id, closed
# 0/1, PTTL of last, last event name, data of the first event if it is
# execution-start (else ''), unexpired members}.
_SUMMARY = _NOW_MS + """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local closed = redis.call('EXISTS', KEYS[2])
local pttl = redis.call('PTTL', KEYS[1])
local name = ''
local tip = redis.call('LINDEX', KEYS[3], -1)
if tip then
  local a = string.find(tip, '\\n', 1, true)
  local b = string.find(tip, '\\n', a + 1, true)
  name = string.sub(tip, a + 1, (b or 0) - 1)
end
local start = ''
local first = redis.call('LINDEX', KEYS[3], 0)
if first and string.len(first) < 4096 then
  local a = string.find(first, '\\n', 1, true)
  local b = string.find(first, '\\n', a + 1, true)
  if b and string.sub(first, a + 1, b - 1) == 'execution-start' then start = string.sub(first, b + 1) end
end
local viewers = redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf')
return {last, closed, pttl, name, start, viewers}
"""
