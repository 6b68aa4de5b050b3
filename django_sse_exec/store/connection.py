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
import threading
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import urlsplit

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
from ..exceptions import StoreUnavailable
from .batcher import UNAVAILABLE

T = TypeVar("T")


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


class Connections:
    """Clients of one Redis URL, for every loop and thread of the process."""

    #: Seconds to open a connection before :class:`StoreUnavailable`.
    CONNECT_TIMEOUT = 3.0
    #: Seconds to wait for a reply before :class:`StoreUnavailable`.
    SOCKET_TIMEOUT = 5.0

    def __init__(self, url: str, max_connections: int) -> None:
        self.url = url
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
            pool = BlockingConnectionPool.from_url(
                self.url, retry=Retry(ConstantBackoff(0.05), 1), **self._pool_options())
            client = self._clients[loop] = Redis.from_pool(pool)
        return client

    def _pool_options(self) -> dict[str, Any]:
        """Bounded pools and timeouts shared by the async and the blocking clients."""
        return {
            "max_connections": self.max_connections,
            "timeout": self.SOCKET_TIMEOUT,
            "socket_connect_timeout": self.CONNECT_TIMEOUT,
            "socket_timeout": self.SOCKET_TIMEOUT,
            "decode_responses": True,
        }

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

    def script(self, source: str) -> Any:
        """The registered script of ``source`` (it only caches the SHA; runs on any client)."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = Redis().register_script(source)
        return script

    async def eval(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script on the running loop's client."""
        return await self.run(self.script(source)(keys=keys, args=args, client=self.client()))

    def eval_blocking(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script on the blocking client, in the calling thread."""
        client = self.blocking_client()
        try:
            try:
                return client.evalsha(self.script(source).sha, len(keys), *keys, *args)
            except redis_errors.NoScriptError:
                client.script_load(source)
                return client.evalsha(self.script(source).sha, len(keys), *keys, *args)
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await a Redis call, turning connection errors into StoreUnavailable."""
        try:
            return await awaitable
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The :class:`StoreUnavailable` to raise for a connection error ``exc``."""
        metrics.store_error()
        parts = urlsplit(self.url)
        where = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
        error = StoreUnavailable(f"Redis at {where} is unavailable: {exc}")
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
