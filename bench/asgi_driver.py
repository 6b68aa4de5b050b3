"""Streams opened in process, with no server and no socket: an ASGI app called with
scope, receive and send, and the raw server's protocol on a stand-in transport.

The instruction-count workload (:mod:`bench.instructions`) measures what the
app does per connect and per delivered event, and what the raw asyncio
reference does for the same: a server's HTTP parsing and socket writes are the
same for both and are left out, so each side is driven the way its server would
drive it. :class:`AsgiStream` is one ``GET`` to an ASGI app (the fast path, or
Django's handler for the view); :class:`RawStream` is one connection of
:mod:`bench.raw_server`. Both count the event frames they receive in a shared
:class:`Tally`, which the workload awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]

#: Every event frame has exactly one data line, after its id and event lines.
_DATA_LINE = b"\ndata: "


def scope_for(url: str) -> dict[str, Any]:
    """The ASGI scope of an ``EventSource``'s GET of ``url`` (a path with its query)."""
    parts = urlsplit(url)
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": parts.path, "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(), "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"accept", b"text/event-stream"),
                        (b"cache-control", b"no-cache")],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000)}


class Tally:
    """Event frames received by every stream of a workload, and a wait for a total."""

    def __init__(self) -> None:
        self.events = 0
        self._target = 0
        self._waiter: asyncio.Future[None] | None = None

    def add(self, body: bytes) -> None:
        """Count the event frames in ``body``."""
        count = body.count(_DATA_LINE)
        if count:
            self.events += count
            waiter = self._waiter
            if waiter is not None and self.events >= self._target and not waiter.done():
                waiter.set_result(None)

    async def reach(self, total: int) -> None:
        """Return once ``total`` frames have been received in all."""
        if self.events >= total:
            return
        self._target = total
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class AsgiStream:
    """One ``GET`` of a stream (``scope``: see :func:`scope_for`), made by calling an ASGI app
    in this process.

    ``opened`` resolves at the first body message (the preamble of a 200, or a
    refusal's body), or when the app returns without one; ``disconnect()`` makes
    the next ``receive()`` return ``http.disconnect``, as a server does when the
    client goes; ``task`` ends when the app has finished with the request.
    """

    def __init__(self, app: ASGIApp, scope: Message, tally: Tally) -> None:
        loop = asyncio.get_running_loop()
        self.tally = tally
        self.status = 0
        self.opened: asyncio.Future[None] = loop.create_future()
        self._gone: asyncio.Future[None] = loop.create_future()
        self._asked = False
        self.task = loop.create_task(app(scope, self.receive, self.send))
        self.task.add_done_callback(self._ended)

    async def receive(self) -> Message:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            return
        body = message.get("body", b"")
        if body:
            self.tally.add(body)
        if not self.opened.done():
            self.opened.set_result(None)

    def disconnect(self) -> None:
        if not self._gone.done():
            self._gone.set_result(None)

    async def closed(self) -> None:
        """Wait until the app has finished with the request."""
        await asyncio.wait([self.task])

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not self.opened.done():
            self.opened.set_result(None)


class _Transport:
    """What the raw server's protocol uses of a socket transport: ``write`` (counted) and ``close``."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += 1
        self.tally.add(data)

    def close(self) -> None:
        pass


class RawStream:
    """One connection of the raw server's protocol (``bench.raw_server.Connection``), in process."""

    def __init__(self, protocol: Any, request: bytes, tally: Tally) -> None:
        self.protocol = protocol
        self.transport = _Transport(tally)
        protocol.connection_made(self.transport)
        protocol.data_received(request)
        self.status = 200 if self.transport.written else 0
        #: Done at once: the raw server answers within ``data_received`` (as :class:`AsgiStream`'s).
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.opened.set_result(None)

    def disconnect(self) -> None:
        self.protocol.connection_lost(None)

    async def closed(self) -> None:
        """Nothing to wait for: the protocol forgets the connection in ``connection_lost``."""


__all__ = ["AsgiStream", "RawStream", "Tally", "scope_for"]
