"""The hub's own subscription to the pub/sub layer's group channels: one parse, no hop.

Part of :mod:`django_sse_exec.layer.redis` (its docstring says when channels_redis's
internals are used). Through ``RedisPubSubChannelLayer.receive()`` an event
crosses redis-py's pub/sub client (a timeout context per message), the layer's
queue for the hub's channel and a task wake-up before the hub sees it: three
passes of the event loop, and about a fifth of a server's CPU per event in the
many-executions profile. Here the hub subscribes to its executions' group
channels on a connection of its own per Redis host, and each message is parsed
(:mod:`.resp`), deserialised with the layer's own serializer and handed to the
hub in the callback that received the bytes, as the raw reference server does.

The group stays the bus: senders still publish through the layer (or the fused
script, the same bytes), and any other consumer that joined the group with the
layer's ``group_add`` still receives every event. Used only when the layer is
the pub/sub layer of a tested channels_redis, its hosts are plain ``redis://``
or ``unix://`` ones (not Sentinel, not TLS), and a probe passed: a message sent
with the layer's public ``group_send`` arrived here, deserialised to exactly
what was sent. Otherwise :func:`open_direct` returns None and the hub uses the
layer's ``receive()``. A lost connection is re-made (with backoff) and its
channels subscribed again; the hub then reads what it missed from the log.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from ...outages import report
from . import resp
from .versions import version_is_tested

logger = logging.getLogger("django_sse_exec")

#: Seconds a subscribe (or a reconnect, for a subscribe made while down) may take.
TIMEOUT = 10.0
#: Seconds the probe's message may take to arrive.
PROBE_TIMEOUT = 5.0
#: Host options this module can honour (anything else, e.g. TLS or Sentinel: the layer's path).
_KNOWN_OPTIONS = {"address", "host", "port", "password", "username", "db", "socket_timeout",
                  "socket_connect_timeout", "socket_keepalive", "max_connections",
                  "retry_on_timeout", "health_check_interval", "client_name"}


def endpoint_of(host: dict[str, Any]) -> dict[str, Any] | None:
    """How to reach one channels_redis host: ``{"host", "port"}`` or ``{"path"}``, with
    ``password``/``username``; None if this module cannot (TLS, Sentinel, unknown options)."""
    if set(host) - _KNOWN_OPTIONS:
        return None
    out: dict[str, Any] = {"password": host.get("password"), "username": host.get("username")}
    if "address" in host:
        url = urlsplit(str(host["address"]))
        if url.scheme == "unix":
            return {**out, "path": url.path}
        if url.scheme != "redis":
            return None
        out["password"] = unquote(url.password) if url.password else out["password"]
        out["username"] = unquote(url.username) if url.username else out["username"]
        return {**out, "host": url.hostname or "localhost", "port": url.port or 6379}
    return {**out, "host": host.get("host", "localhost"), "port": int(host.get("port", 6379))}


class _Protocol(asyncio.Protocol):
    """One connection: every reply parsed where it arrives."""

    def __init__(self, shard: _Shard) -> None:
        self.shard = shard
        self.reader = resp.make_reader()
        self.transport: Any = None  # asyncio's or uvloop's transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        reader, shard = self.reader, self.shard
        reader.feed(data)
        on_message = shard.owner.on_message
        try:
            while (reply := reader.gets()) is not False:
                if type(reply) is list and reply[0] == b"message":
                    on_message(reply[2])
                else:
                    shard.reply(reply)
        finally:
            shard.owner.on_read_end()

    def connection_lost(self, exc: Exception | None) -> None:
        self.shard.lost(self)


class _Shard:
    """The subscription on one Redis host: its channels, its connection, its pending replies."""

    def __init__(self, owner: DirectSubscription, endpoint: dict[str, Any]) -> None:
        self.owner = owner
        self.endpoint = endpoint
        self.channels: set[str] = set()
        self.protocol: _Protocol | None = None
        #: Replies awaited in order: [kind, confirmations left, future].
        self.waiting: deque[list[Any]] = deque()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reconnecting: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Open the connection, authenticate, subscribe every channel; raise if any fails."""
        loop, endpoint = asyncio.get_running_loop(), self.endpoint
        protocol = _Protocol(self)
        if "path" in endpoint:
            await loop.create_unix_connection(lambda: protocol, endpoint["path"])
        else:
            await loop.create_connection(lambda: protocol, endpoint["host"], endpoint["port"])
        self.protocol = protocol
        if endpoint["password"]:
            auth = [endpoint["username"], endpoint["password"]] if endpoint["username"] else [endpoint["password"]]
            await asyncio.wait_for(self._command("auth", 1, "AUTH", *auth), TIMEOUT)
        sent: set[str] = set()
        while self.channels - sent:  # channels wanted while the last SUBSCRIBE was on its way too
            names = list(self.channels - sent)
            sent.update(names)
            await asyncio.wait_for(self._command("subscribe", len(names), "SUBSCRIBE", *names), TIMEOUT)
        if sent - self.channels:  # given up meanwhile
            protocol.transport.write(resp.pack("UNSUBSCRIBE", *(sent - self.channels)))
        if not self.ready.done():
            self.ready.set_result(None)

    def _command(self, kind: str, replies: int, *args: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        protocol = self.protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            future.set_exception(ConnectionError("the hub's Redis connection is down"))
            return future
        self.waiting.append([kind, replies, future])
        protocol.transport.write(resp.pack(*args))
        return future

    async def subscribe(self, names: list[str]) -> None:
        self.channels.update(names)
        if self.ready.done():
            await asyncio.wait_for(self._command("subscribe", len(names), "SUBSCRIBE", *names), TIMEOUT)
        else:  # reconnecting: its SUBSCRIBE includes these
            await asyncio.wait_for(asyncio.shield(self.ready), TIMEOUT)

    def unsubscribe(self, names: list[str]) -> None:
        self.channels.difference_update(names)
        protocol = self.protocol
        if self.ready.done() and protocol is not None and protocol.transport is not None:
            protocol.transport.write(resp.pack("UNSUBSCRIBE", *names))

    def reply(self, reply: Any) -> None:
        """A reply that is not a message: a confirmation, or an error."""
        if resp.is_error(reply):
            if self.waiting:
                self.waiting.popleft()[2].set_exception(resp.ReplyError(str(reply)))
            logger.error("Redis refused a command of the hub's subscription: %s", reply)
            return
        kind = reply[0] if type(reply) is list else b"auth"
        if self.waiting and kind == self.waiting[0][0].encode():
            head = self.waiting[0]
            head[1] -= 1
            if head[1] <= 0:
                self.waiting.popleft()
                if not head[2].done():
                    head[2].set_result(None)

    def lost(self, protocol: _Protocol) -> None:
        if protocol is not self.protocol:
            return
        self.protocol = None
        while self.waiting:
            future = self.waiting.popleft()[2]
            if not future.done():
                future.set_exception(ConnectionError("the hub's Redis connection was lost"))
        if self.owner.closed:
            return
        if self.ready.done():
            self.ready = asyncio.get_running_loop().create_future()
        if self.reconnecting is None or self.reconnecting.done():
            logger.debug("the hub's Redis subscription was lost; reconnecting")
            self.reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        failed = False
        while not self.owner.closed:
            await asyncio.sleep(delay)
            try:
                await self.connect()
            except (OSError, asyncio.TimeoutError, resp.ReplyError) as exc:
                # An outage: logged once by the tracker, which the hub's maintenance ends.
                failed = report(exc, "the hub's subscription") or failed
                logger.debug("reconnecting the hub's subscription failed: %s", exc)
                self.close()
                delay = min(delay * 2, 5.0)
                continue
            if not failed:  # a blip, not an outage
                logger.info("the hub's Redis subscription was lost and is back")
            self.owner.on_reconnect()
            return

    def close(self) -> None:
        protocol, self.protocol = self.protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


class DirectSubscription:
    """Group channels of the pub/sub layer read straight from Redis, one connection per host.

    ``on_message(message)`` gets each deserialised message; ``on_read_end()``
    runs after each batch of bytes was parsed (the hub hands its streams what
    arrived together); ``on_reconnect()`` after a lost connection was re-made.
    """

    def __init__(self, layer: Any, endpoints: list[dict[str, Any]],
                 on_message: Callable[[dict[str, Any]], None], on_read_end: Callable[[], None],
                 on_reconnect: Callable[[], None]) -> None:
        self._inner = layer._get_layer()
        deserialize = layer.deserialize
        self.on_message: Callable[[bytes], None] = lambda data: on_message(deserialize(data))
        self._dispatch = self.on_message
        self.on_read_end = on_read_end
        self.on_reconnect = on_reconnect
        self.shards = [_Shard(self, endpoint) for endpoint in endpoints]
        self.closed = False

    def _by_shard(self, groups: Iterable[str]) -> dict[int, list[str]]:
        inner = self._inner
        out: dict[int, list[str]] = {}
        for group in groups:
            channel = inner._get_group_channel_name(group)
            out.setdefault(inner._shards.index(inner._get_shard(channel)), []).append(channel)
        return out

    async def subscribe(self, groups: Iterable[str]) -> None:
        """Receive the messages of ``groups`` from now on (returns once Redis confirmed)."""
        await asyncio.gather(*(self.shards[index].subscribe(names)
                               for index, names in self._by_shard(groups).items()))

    def unsubscribe(self, groups: Iterable[str]) -> None:
        """Stop receiving ``groups`` (not awaited: later messages are simply not for anyone)."""
        for index, names in self._by_shard(groups).items():
            self.shards[index].unsubscribe(names)

    async def probe(self, layer: Any) -> str | None:
        """Send a message with the layer's ``group_send``; None if it arrived here intact."""
        group = f"sse_exec.probe.{uuid.uuid4().hex}"
        sent = {"type": "sse.probe", "n": uuid.uuid4().int & 0xFFFF_FFFF, "s": "é"}
        arrived: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def catch(data: bytes) -> None:
            if not arrived.done():
                arrived.set_result(data)

        self.on_message = catch
        try:
            await self.subscribe([group])
            await layer.group_send(group, sent)
            data = await asyncio.wait_for(arrived, PROBE_TIMEOUT)
            got = layer.deserialize(data)
            return None if got == sent else f"received {got!r}, expected {sent!r}"
        except Exception as exc:  # anything at all: the layer's path is the safe one
            return f"{type(exc).__name__}: {exc}"
        finally:
            self.on_message = self._dispatch
            self.unsubscribe([group])

    def close(self) -> None:
        """Close every connection (no reconnect)."""
        self.closed = True
        for shard in self.shards:
            if shard.reconnecting is not None:
                shard.reconnecting.cancel()
            shard.close()


def plan(layer: Any) -> list[dict[str, Any]] | str:
    """The endpoints of the layer's hosts, in its order, or why the hub cannot read them itself."""
    if type(layer).__name__ != "RedisPubSubChannelLayer" or not hasattr(layer, "deserialize"):
        return "not the pub/sub layer"
    if not version_is_tested():
        return "an untested channels_redis"
    try:
        inner = layer._get_layer()
        hosts = [shard.host for shard in inner._shards]
        inner._get_shard, inner._get_group_channel_name  # noqa: B018 - present, or AttributeError
    except AttributeError:
        return "the layer's internals are not the tested ones"
    endpoints = [endpoint_of(host) if isinstance(host, dict) else None for host in hosts]
    if not endpoints or any(e is None for e in endpoints):
        return "a host this module cannot reach itself (TLS, Sentinel or other options)"
    return [e for e in endpoints if e is not None]


async def open_direct(layer: Any, on_message: Callable[[dict[str, Any]], None],
                      on_read_end: Callable[[], None],
                      on_reconnect: Callable[[], None]) -> DirectSubscription | None:
    """A probed :class:`DirectSubscription` for ``layer``, or None (use the layer's ``receive()``)."""
    endpoints = plan(layer)
    if isinstance(endpoints, str):
        logger.debug("the hub reads through the channel layer: %s", endpoints)
        return None
    direct = DirectSubscription(layer, endpoints, on_message, on_read_end, on_reconnect)
    try:
        for shard in direct.shards:
            await shard.connect()
        failure = await direct.probe(layer)
    except (OSError, asyncio.TimeoutError, resp.ReplyError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
    if failure is not None:
        direct.close()
        logger.warning("the hub reads through the channel layer's receive(): its own "
                       "subscription failed its probe (%s)", failure)
        return None
    return direct


__all__ = ["DirectSubscription", "endpoint_of", "open_direct", "plan"]
