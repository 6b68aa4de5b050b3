"""The Redis store's connections: one client per event loop, one blocking client
per process, cached scripts, and errors turned into StoreUnavailable.

redis.asyncio connections belong to the event loop that opened them, so there
is one pooled client per running loop; synchronous senders (Celery workers,
sync views) share one thread-safe blocking client. Pools are bounded and
blocking (more concurrent commands wait for a connection instead of failing),
and connection problems raise
:class:`~django_sse_exec.exceptions.StoreUnavailable` within a few seconds
(``CONNECT_TIMEOUT`` / ``SOCKET_TIMEOUT``, one retry) instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis as sync_redis
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ConstantBackoff
from redis.retry import Retry as BlockingRetry
from redis.sentinel import Sentinel as BlockingSentinel

from ..conf import sse_settings
from ..exceptions import StoreUnavailable
from ..outages import tracker
from ..telemetry import metrics
from .batcher import UNAVAILABLE
from .hosts import HostSpec, hosts_setting

T = TypeVar("T")

logger = logging.getLogger("django_sse_exec")

#: ``(replicas, timeout ms)`` of a ``WAIT`` after each log write.
ReplicaAcks = tuple[int, int]


def replica_acks_from_settings() -> ReplicaAcks | None:
    """``SSE_EXEC["REDIS_WAIT_REPLICAS"]`` and ``["REDIS_WAIT_TIMEOUT"]`` as WAIT's
    arguments, or None when no replica acknowledgement is asked for."""
    replicas = int(sse_settings.REDIS_WAIT_REPLICAS or 0)
    if replicas <= 0:
        return None
    return replicas, max(1, int(float(sse_settings.REDIS_WAIT_TIMEOUT) * 1000))


class Connections:
    """Clients of one Redis host, for every loop and thread of the process.

    A Sentinel host gets Sentinel-managed clients: each new connection asks the
    sentinels for the current master, and a connection to a master that was
    demoted is dropped, so after a failover the next command reaches the new one.
    """

    #: Seconds to open a connection before :class:`StoreUnavailable`.
    CONNECT_TIMEOUT = 3.0
    #: Seconds to wait for a reply before :class:`StoreUnavailable`.
    SOCKET_TIMEOUT = 5.0

    def __init__(self, host: HostSpec | str, max_connections: int) -> None:
        self.host = HostSpec(url=host) if isinstance(host, str) else host
        tracker.locate(self.host.describe(), hosts_setting())  # what an outage's error names
        #: The last epoch this process saw on this host (None: none yet); see
        #: :mod:`.scripts`. Knowing it is what lets the next write start a new
        #: epoch when the host's marker is gone.
        self.epoch: int | None = None
        #: Replicas connected to the master at the last acknowledged write: a write
        #: waits for all of them (at least ``REDIS_WAIT_REPLICAS``), because Sentinel
        #: may promote any of them.
        self.replicas_connected = 0
        #: Connections per event loop (and for all threads' blocking calls).
        self.max_connections = max_connections
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary())
        self._scripts: dict[str, Any] = {}
        self._blocking: sync_redis.Redis | None = None
        self._blocking_lock = threading.Lock()

    def client(self) -> Redis:
        """The Redis client of the running event loop (one pool per loop)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            retry = Retry(ConstantBackoff(0.05), 1)
            if self.host.is_sentinel:

                client = Sentinel(list(self.host.sentinels), **self._sentinel_options()).master_for(
                    self.host.master_name, redis_class=Redis, retry=retry,
                    **self._pool_options(blocking=False))
            else:
                client = Redis.from_pool(BlockingConnectionPool.from_url(
                    self.host.url, retry=retry, **self._pool_options()))
            self._clients[loop] = client
        return client

    def _pool_options(self, blocking: bool = True) -> dict[str, Any]:
        """Bounded pools and timeouts shared by the async and the blocking clients.

        Sentinel-managed pools cannot block: past ``max_connections`` a command
        fails (:class:`StoreUnavailable`) instead of waiting.
        """
        return {
            **dict(self.host.options),
            "max_connections": self.max_connections,
            **({"timeout": self.SOCKET_TIMEOUT} if blocking else {}),
            "socket_connect_timeout": self.CONNECT_TIMEOUT,
            "socket_timeout": self.SOCKET_TIMEOUT,
            "decode_responses": True,
        }

    def _sentinel_options(self) -> dict[str, Any]:
        """Options of the connections to the sentinels themselves (short timeouts, so a
        dead sentinel is skipped quickly; the host's ``sentinel_kwargs`` override them)."""
        return {"sentinel_kwargs": {"socket_connect_timeout": self.CONNECT_TIMEOUT,
                                    "socket_timeout": self.CONNECT_TIMEOUT,
                                    **dict(self.host.sentinel_kwargs)}}

    def blocking_client(self) -> sync_redis.Redis:
        """The process's blocking client (thread-safe; redis-py renews its pool after fork)."""
        if self._blocking is None:
            with self._blocking_lock:
                if self._blocking is None:
                    retry = BlockingRetry(ConstantBackoff(0.05), 1)
                    if self.host.is_sentinel:

                        self._blocking = BlockingSentinel(
                            list(self.host.sentinels), **self._sentinel_options()).master_for(
                            self.host.master_name, redis_class=sync_redis.Redis, retry=retry,
                            **self._pool_options(blocking=False))
                    else:
                        # Blocking pool: more threads than connections wait for one.
                        pool = sync_redis.BlockingConnectionPool.from_url(
                            self.host.url, retry=retry, **self._pool_options())
                        self._blocking = sync_redis.Redis(connection_pool=pool)
        return self._blocking

    def script(self, source: str) -> Any:
        """The registered script of ``source`` (it only caches the SHA; runs on any client)."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = Redis().register_script(source)
        return script

    async def eval(self, source: str, keys: list[str], args: list[Any],
                   acks: ReplicaAcks | None = None) -> Any:
        """Run a script on the running loop's client; with ``acks``, return only once
        that many replicas have it (``WAIT``, same round trip) or the timeout passed."""
        if acks is None:
            return await self.run(self.script(source)(keys=keys, args=args,
                                                      client=self.client()))
        command = ("EVALSHA", self.script(source).sha, len(keys), *keys, *args)
        wait = self._wait(acks)
        for attempt in range(2):
            async with self.client().pipeline(transaction=False) as pipe:
                pipe.execute_command(*command)
                pipe.execute_command(*wait)
                pipe.execute_command("ROLE")
                result, acked, role = await self.run(pipe.execute(raise_on_error=False))
            if not (attempt == 0 and isinstance(result, redis_errors.NoScriptError)):
                break
            await self.run(self.client().script_load(source))
        return self._acknowledged(result, acked, role, wait)

    def eval_blocking(self, source: str, keys: list[str], args: list[Any],
                      acks: ReplicaAcks | None = None) -> Any:
        """:meth:`eval` on the blocking client, in the calling thread."""
        client = self.blocking_client()
        command = ("EVALSHA", self.script(source).sha, len(keys), *keys, *args)
        try:
            for attempt in range(2):
                if acks is None:
                    try:
                        return client.execute_command(*command)
                    except redis_errors.NoScriptError:
                        if attempt:
                            raise
                else:
                    wait = self._wait(acks)
                    with client.pipeline(transaction=False) as pipe:
                        pipe.execute_command(*command)
                        pipe.execute_command(*wait)
                        pipe.execute_command("ROLE")
                        result, acked, role = pipe.execute(raise_on_error=False)
                    if attempt or not isinstance(result, redis_errors.NoScriptError):
                        return self._acknowledged(result, acked, role, wait)
                client.script_load(source)
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc
        raise AssertionError("unreachable")

    def _wait(self, acks: ReplicaAcks) -> tuple[str, int, int]:
        """The ``WAIT`` after a write: every replica the master had at the last write,
        and at least ``REDIS_WAIT_REPLICAS`` (Sentinel promotes the replica with the
        highest replication offset *it last saw*, which may be seconds old: a write
        only some replicas acknowledged can be lost in a failover)."""
        return "WAIT", max(acks[0], self.replicas_connected), acks[1]

    def _acknowledged(self, result: Any, acked: Any, role: Any,
                      wait: tuple[str, int, int]) -> Any:
        """The script's result; a failed WAIT or too few replicas are logged, not raised:
        the write is done on the master, and raising would invite a retry that repeats it.
        ``role`` (the master's ``ROLE``) says how many replicas the next write waits for."""
        if isinstance(result, Exception):
            raise result
        if isinstance(role, list) and len(role) > 2 and role[0] == "master":
            self.replicas_connected = len(role[2])
        if isinstance(acked, Exception) or int(acked) < wait[1]:
            metrics.store_error()
            logger.warning("Redis at %s: %s of %s replicas acknowledged a write within %s ms; "
                           "a failover now could lose it", self.host.describe(),
                           acked if isinstance(acked, Exception) else int(acked), *wait[1:])
        return result

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await a Redis call, turning connection errors into StoreUnavailable."""
        try:
            return await awaitable
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The :class:`StoreUnavailable` to raise for a connection error ``exc``."""
        metrics.store_error()
        error = StoreUnavailable(f"Redis at {self.host.describe()} is unavailable: {exc}")
        error.__cause__ = exc
        return error

    async def aclose(self) -> None:
        """Close the running loop's client and the blocking one."""
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
