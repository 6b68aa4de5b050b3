"""How many bytes of a stream the server still holds for a client that is not reading.

daphne (Twisted) has no backpressure: ASGI ``send`` never blocks, and whatever a
stream yields piles up in the connection's transport buffer when the client stops
reading — without limit. A stream cannot see that buffer through ASGI, so this
module finds the connection's transport: Twisted's reactor lists every connected
socket, each with its peer address, and the ASGI scope carries the same address
(``scope["client"]``). Sockets are indexed by peer, newest first, so finding a
just-accepted connection costs a few steps, not a scan of every connection.

The transport's own counters (``dataBuffer``/``offset``/``_tempDataLen``, the
fields Twisted's ``FileDescriptor`` uses to decide when to pause a producer)
give the bytes not yet accepted by the kernel, and ``abortConnection()`` drops
the connection without waiting for a flush that would never come.

Servers with backpressure (uvicorn) need none of this: their ``send`` waits, so
the time a stream spends suspended in a write is the signal (see the hub's
write deadline). Where no transport is found, :func:`find_backlog` returns None.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Protocol


class Backlog(Protocol):
    """A connection's unsent bytes, and a way to drop the connection."""

    def pending(self) -> int:
        """Bytes written by the application that the client has not taken yet."""

    def abort(self) -> None:
        """Close the connection at once, discarding what is unsent."""


class TwistedBacklog:
    """:class:`Backlog` of a Twisted TCP transport."""

    __slots__ = ("transport",)

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    def pending(self) -> int:
        t = self.transport
        return len(t.dataBuffer) - t.offset + t._tempDataLen

    def abort(self) -> None:
        if self.transport.connected:
            self.transport.abortConnection()


_index: dict[tuple[str, int], Any] = {}


def _reactor_of(loop: asyncio.AbstractEventLoop) -> Any:
    """Twisted's reactor if it drives ``loop`` (the stream runs under daphne), else None."""
    reactor = getattr(sys.modules.get("twisted.internet"), "reactor", None)
    if reactor is None or getattr(reactor, "_asyncioEventloop", None) is not loop:
        return None
    return reactor


def _live(transport: Any, peer: tuple[str, int]) -> bool:
    client: Any = getattr(transport, "client", None)
    return (bool(client) and (client[0], client[1]) == peer
            and bool(getattr(transport, "connected", False))
            and not getattr(transport, "disconnecting", False))


def find_backlog(peer: Any) -> Backlog | None:
    """The backlog of the connection from ``peer`` (``scope["client"]``), or None.

    Must be called on the server's event loop.
    """
    if not peer or len(peer) < 2:
        return None
    reactor = _reactor_of(asyncio.get_running_loop())
    if reactor is None:
        return None
    key = (str(peer[0]), int(peer[1]))
    transport = _index.get(key)
    if transport is None or not _live(transport, key):
        transport = _scan(reactor, key)
        if transport is None or not _live(transport, key):
            return None
    return TwistedBacklog(transport)


def _scan(reactor: Any, key: tuple[str, int]) -> Any:
    """Index the reactor's sockets, newest first, until ``key``'s is found.

    A stream starts right after its connection was accepted, so its socket is
    among the newest: the scan usually stops after a few entries.
    """
    readers = getattr(reactor, "_readers", None)  # insertion-ordered on the asyncio reactor
    if not isinstance(readers, dict):
        readers = dict.fromkeys(reactor.getReaders())
    if len(_index) > 2 * len(readers) + 64:
        _index.clear()  # forget closed connections
    for reader in reversed(readers):
        client = getattr(reader, "client", None)
        if isinstance(client, tuple) and len(client) >= 2 and hasattr(reader, "dataBuffer"):
            found = (str(client[0]), int(client[1]))
            _index[found] = reader
            if found == key:
                return reader
    return None


__all__ = ["Backlog", "TwistedBacklog", "find_backlog"]
