"""How many bytes of a stream the server still holds for a client that is not reading.

daphne (Twisted) has no backpressure: ASGI ``send`` never blocks, and whatever a
stream yields piles up in the connection's transport buffer when the client stops
reading — without limit. A stream cannot see that buffer through ASGI, so this
module finds the connection's transport through daphne's own registry of open
requests (``Server.connections``), matched by *identity* with the stream's ASGI
scope: daphne puts the very list objects it keeps on the request
(``clean_headers``, ``client_addr``) into the scope it hands the application, and
Django keeps that scope on ``request.scope``. Identity holds behind
``--proxy-headers`` (the client address then comes from ``X-Forwarded-For`` and
may be anything, even another connection's address) and on a UNIX socket (no
address at all), where matching by address found nothing — or the wrong
connection.

The daphne server is reached from Twisted's reactor: its listening ports are
readers whose factory (daphne's ``HTTPFactory``) links to the server. Requests
are searched newest first, so finding a just-started stream costs a few steps.

The transport's own counters (``dataBuffer``/``offset``/``_tempDataLen``, the
fields Twisted's ``FileDescriptor`` uses to decide when to pause a producer)
give the bytes not yet accepted by the kernel, and ``abortConnection()`` drops
the connection without waiting for a flush that would never come.

With TLS terminated by daphne (``-e ssl:…``) the request's transport is Twisted's
TLS layer: its not-yet-encrypted buffer (``_appSendBuffer``) counts too, and the
socket transport under it holds the rest.

All of this reads daphne's and Twisted's internals, so it is used only for the
daphne versions the suite has tested (:data:`DAPHNE_TESTED`); outside them, or on
a transport without those counters, :func:`find_backlog` returns None, the stream
runs unmeasured, a warning is logged once, and system check ``W013`` names the
alternative (uvicorn, which applies backpressure).

Servers with backpressure (uvicorn) need none of this: their ``send`` waits, so
the time a stream spends suspended in a write is the signal (see the hub's
write deadline).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from typing import Any, Protocol

import daphne

logger = logging.getLogger("django_sse_exec")

#: daphne versions whose internals this module was tested against: [low, high).
DAPHNE_TESTED: tuple[tuple[int, ...], tuple[int, ...]] = ((4, 2), (4, 3))


class Backlog(Protocol):
    """A connection's unsent bytes, and a way to drop the connection."""

    def pending(self) -> int:
        """Bytes written by the application that the client has not taken yet."""

    def abort(self) -> None:
        """Close the connection at once, discarding what is unsent."""


class TwistedBacklog:
    """:class:`Backlog` of a Twisted TCP or UNIX-socket transport."""

    __slots__ = ("transport",)

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    def pending(self) -> int:
        t = self.transport
        return len(t.dataBuffer) - t.offset + t._tempDataLen

    def abort(self) -> None:
        if self.transport.connected:
            self.transport.abortConnection()


class TwistedTLSBacklog(TwistedBacklog):
    """:class:`Backlog` of a TLS connection terminated by daphne (``-e ssl:…``): the
    cleartext the TLS layer still holds plus the socket transport's unsent bytes."""

    __slots__ = ("tls",)

    def __init__(self, tls: Any) -> None:
        super().__init__(tls.transport)
        self.tls = tls

    def pending(self) -> int:
        return sum(map(len, self.tls._appSendBuffer)) + super().pending()

    def abort(self) -> None:
        if self.transport.connected:
            self.tls.abortConnection()


def daphne_version() -> str:
    """The installed daphne's version (a dependency of the app)."""
    return str(getattr(daphne, "__version__", "0"))


def is_tested_daphne(version: str | None) -> bool:
    """True if ``version`` lies in :data:`DAPHNE_TESTED`."""
    if not version:
        return False
    try:
        parts = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    low, high = DAPHNE_TESTED
    return low <= parts < high


_server: dict[str, Any] = {}  # "reactor" / "server": the daphne server found last
_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def _reactor_of(loop: asyncio.AbstractEventLoop) -> Any:
    """Twisted's reactor if it drives ``loop`` (the stream runs under daphne), else None."""
    reactor = getattr(sys.modules.get("twisted.internet"), "reactor", None)
    if reactor is None or getattr(reactor, "_asyncioEventloop", None) is not loop:
        return None
    return reactor


def _daphne_server(reactor: Any) -> Any:
    """daphne's ``Server``, through a listening port's factory (cached per reactor)."""
    if _server.get("reactor") is reactor:
        return _server["server"]
    readers = getattr(reactor, "_readers", None)
    candidates = list(readers) if isinstance(readers, dict) else list(reactor.getReaders())
    for reader in candidates:
        server = getattr(getattr(reader, "factory", None), "server", None)
        if isinstance(getattr(server, "connections", None), dict):
            _server.update(reactor=reactor, server=server)
            return server
    return None


def request_for_scope(server: Any, scope: Mapping[str, Any]) -> Any:
    """The daphne request whose scope is ``scope`` (by identity of its lists), newest first."""
    headers, client = scope.get("headers"), scope.get("client")
    if headers is None and client is None:
        return None  # nothing to match by identity
    for request in reversed(server.connections):
        if (headers is not None and getattr(request, "clean_headers", None) is headers) or (
                client is not None and getattr(request, "client_addr", None) is client):
            return request
    return None


def _measurable(transport: Any) -> bool:
    return all(hasattr(transport, name) for name in (
        "dataBuffer", "offset", "_tempDataLen", "abortConnection", "connected"))


def _is_tls(transport: Any) -> bool:
    return (isinstance(getattr(transport, "_appSendBuffer", None), list)
            and hasattr(transport, "abortConnection")
            and _measurable(getattr(transport, "transport", None)))


def find_backlog(scope: Mapping[str, Any] | None) -> Backlog | None:
    """The backlog of the connection serving ``scope`` (the stream's ASGI scope), or None.

    None when the server applies backpressure itself (not daphne), and — with a
    warning, once — when daphne's connection cannot be measured. Must be called
    on the server's event loop.
    """
    if not scope:
        return None
    reactor = _reactor_of(asyncio.get_running_loop())
    if reactor is None:
        return None
    version = daphne_version()
    if not is_tested_daphne(version):
        _warn_once("version", "daphne %s is outside the versions the slow-client guard was "
                   "tested with; streams of clients that stop reading are not bounded "
                   "(serve with uvicorn, or a tested daphne)", version)
        return None
    server = _daphne_server(reactor)
    request = request_for_scope(server, scope) if server is not None else None
    channel = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if _is_tls(transport):
        return TwistedTLSBacklog(transport)
    if transport is None or not _measurable(transport):
        _warn_once("transport", "cannot measure the unsent bytes of a daphne connection "
                   "(%s); streams of clients that stop reading are not bounded",
                   type(transport).__name__ if transport is not None else "request not found")
        return None
    return TwistedBacklog(transport)


__all__ = ["DAPHNE_TESTED", "Backlog", "TwistedBacklog", "TwistedTLSBacklog", "daphne_version",
           "find_backlog", "is_tested_daphne", "request_for_scope"]
