"""An asyncio raw-socket SSE client that can hold thousands of streams at once.

Each :class:`StreamClient` behaves like a browser's ``EventSource``: it opens a
plain HTTP/1.1 connection, decodes the chunked body, parses events, and when the
stream ends or the connection drops it waits the server's ``retry:`` delay and
reconnects with ``Last-Event-ID`` (trying ``alternates`` when the server does not
answer). It stops for good after ``stream-closed``, on a 204, or when told to.
A client can also stop reading after some events (with a tiny receive buffer)
to play a stalled browser, and resume later.

Parsing: streams whose bytes use LF line ends (this app's) go through a fast
block parser; anything with a CR falls back to the spec-conforming
:class:`tests.sse.SSEParser`.

:func:`start_swarm` (or :class:`Swarm`, as a context) drives many clients,
:func:`probe` opens and drops one connection, and :func:`tally` turns what
clients received into lost / duplicated / out-of-order counts, so load and fault
tests share one way of measuring. The HTTP/1.1 pieces (socket, request, head,
chunked body) are in :mod:`tests.http1`, which the benchmark's client uses too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.helpers import wait_until
from tests.http1 import ChunkedDecoder, open_socket, parse_head, request_bytes
from tests.sse import SSEEvent, SSEParser

#: The event that ends an execution's stream for good.
FINAL_EVENT = "stream-closed"


class FastParser:
    """SSE parsing for LF-only streams, a block at a time; hands over to SSEParser on CR."""

    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self.comments: list[str] = []
        self._buffer = b""
        self._spec: SSEParser | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        if self._spec is None and b"\r" in data:
            self._spec = SSEParser(last_event_id=self.last_event_id)
            data, self._buffer = self._buffer + data, b""
        if self._spec is not None:
            events = self._spec.feed(data)
            self.retry, self.comments = self._spec.retry, self._spec.comments
            self.last_event_id = self._spec.last_event_id
            return events
        self._buffer += data
        end = self._buffer.rfind(b"\n\n")
        if end < 0:
            return []
        complete, self._buffer = self._buffer[:end], self._buffer[end + 2:]
        events = []
        for block in complete.split(b"\n\n"):
            event = self._block(block.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def _block(self, block: str) -> SSEEvent | None:
        name, data = "", []
        for line in block.split("\n"):
            if not line:
                continue
            if line[0] == ":":
                self.comments.append(line[1:].strip())
                continue
            key, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if key == "data":
                data.append(value)
            elif key == "event":
                name = value
            elif key == "id" and "\0" not in value:
                self.last_event_id = value
            elif key == "retry" and value.isdigit():
                self.retry = int(value)
        if not data:
            return None
        return SSEEvent(name or "message", "\n".join(data), self.last_event_id)


@dataclass
class Connect:
    """What one connection attempt gave."""

    #: Response status (0 until the headers arrived).
    status: int
    #: Seconds from starting the connect to the response headers.
    seconds: float
    #: How it ended: "eof" (server ended it), "reset", "final", "stopped", "status".
    ended: str = ""
    #: Events received on this connection.
    events: int = 0
    #: Comment lines received on this connection (": keepalive", ": reconnect (...)").
    comments: list[str] = field(default_factory=list)
    #: The error that ended it, if any.
    error: str = ""
    #: Monotonic times the connection started and ended.
    started: float = 0.0
    finished: float = 0.0


@dataclass
class StreamClient:
    """One ``EventSource``-like stream over a raw socket.

    ``url`` is absolute (``http://host:port/path?query``); ``alternates`` are the
    same stream on other servers, tried in turn when one does not answer.
    ``last_event_id`` is where to resume. ``max_retry_ms`` caps the server's
    ``retry:`` delay (None obeys it). ``stall_after`` stops reading after that
    many events until :meth:`resume` (set ``rcvbuf`` small so the server's writes
    back up quickly).
    """

    url: str
    alternates: list[str] = field(default_factory=list)
    last_event_id: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reconnect: bool = True
    max_retry_ms: int | None = None
    stall_after: int | None = None
    rcvbuf: int | None = None
    #: Every event received, in arrival order, across reconnects.
    events: list[SSEEvent] = field(default_factory=list)
    connects: list[Connect] = field(default_factory=list)
    #: The last ``retry:`` value the server sent (milliseconds).
    retry_ms: int | None = None
    #: Set when the stream ended for good (``stream-closed`` or 204).
    finished: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _resume: asyncio.Event = field(default_factory=asyncio.Event)
    _writer: asyncio.StreamWriter | None = None
    _target: int = 0

    @property
    def ids(self) -> list[int]:
        """Ids of the received events that carried one, in arrival order."""
        return [int(e.id) for e in self.events if e.id is not None and e.id.isdigit()]

    @property
    def connected(self) -> bool:
        """True while a connection is open and its response headers arrived."""
        return bool(self.connects) and self.connects[-1].status != 0 and not self.connects[-1].ended

    @property
    def stalled(self) -> bool:
        return self.stall_after is not None and not self._resume.is_set() \
            and len(self.events) >= self.stall_after

    def stop(self) -> None:
        """Make :meth:`run` return (closing the current connection)."""
        self._stop.set()
        self._resume.set()
        self.drop()

    def drop(self) -> None:
        """Abort the current connection (as a network failure would); run() reconnects."""
        if self._writer is not None:
            self._writer.transport.abort()

    def resume(self) -> None:
        """Start reading again after ``stall_after``."""
        self._resume.set()

    async def run(self, connect_timeout: float = 30) -> None:
        """Stream, reconnecting as a browser would, until finished or stopped."""
        while not self._stop.is_set():
            attempt = Connect(0, 0.0, started=time.monotonic())
            self.connects.append(attempt)
            try:
                await self._connect_once(attempt, connect_timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                attempt.ended = attempt.ended or ("stopped" if self._stop.is_set() else "reset")
                attempt.error = repr(exc)
                if attempt.status == 0 and self.alternates:
                    self._target = (self._target + 1) % (len(self.alternates) + 1)
            attempt.finished = time.monotonic()
            if self.finished or not self.reconnect or self._stop.is_set():
                return
            await self._retry_delay()

    async def _retry_delay(self) -> None:
        delay = self.retry_ms if self.retry_ms is not None else 1000
        if self.max_retry_ms is not None:
            delay = min(delay, self.max_retry_ms)
        try:
            await asyncio.wait_for(self._stop.wait(), delay / 1000)
        except asyncio.TimeoutError:
            pass

    def _current_url(self) -> str:
        return ([self.url, *self.alternates])[self._target]

    def _request(self, url: str) -> bytes:
        return request_bytes(url, self.last_event_id, self.headers)

    async def _connect_once(self, attempt: Connect, timeout: float) -> None:
        url = self._current_url()
        reader, writer = await asyncio.wait_for(open_socket(url, self.rcvbuf), timeout)
        self._writer = writer
        try:
            writer.write(self._request(url))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            attempt.status, chunked = parse_head(head)
            attempt.seconds = time.monotonic() - attempt.started
            if attempt.status == 204:
                attempt.ended = "final"
                self.finished = True
                return
            if attempt.status != 200:
                attempt.ended = "status"
                self.finished = True
                return
            await self._read_body(reader, attempt, chunked)
        finally:
            self._writer = None
            writer.transport.abort()

    async def _read_body(self, reader: asyncio.StreamReader, attempt: Connect,
                         chunked: bool) -> None:
        parser = FastParser(None if self.last_event_id is None else str(self.last_event_id))
        decoder = ChunkedDecoder() if chunked else None
        while True:
            if self.stalled:
                await self._resume.wait()
            data = await reader.read(65536)
            if not data:
                attempt.ended = attempt.ended or "eof"
                return
            body = decoder.feed(data) if decoder else data
            events = parser.feed(body)
            attempt.comments.extend(parser.comments)
            parser.comments.clear()
            if parser.retry is not None:
                self.retry_ms = parser.retry
            for event in events:
                self.events.append(event)
                attempt.events += 1
                if event.id is not None and event.id.isdigit():
                    self.last_event_id = int(event.id)
                if event.event == FINAL_EVENT:
                    attempt.ended = "final"
                    self.finished = True
                    return
            if decoder is not None and decoder.finished:
                attempt.ended = "eof"
                return


async def probe(url: str, timeout: float = 30) -> int:
    """Open a stream, wait for its headers and first bytes, drop it; return the status."""
    reader, writer = await asyncio.wait_for(open_socket(url), timeout)
    try:
        writer.write(request_bytes(url))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status, _ = parse_head(head)
        if status == 200:
            await asyncio.wait_for(reader.read(1), timeout)
        return status
    finally:
        writer.transport.abort()


@dataclass
class Tally:
    """How a set of clients' received ids compare with what was sent."""

    clients: int
    expected: int
    lost: int
    duplicated: int
    out_of_order: int

    @property
    def perfect(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.out_of_order == 0


def tally(clients: Iterable[StreamClient], expected_ids: Iterable[int]) -> Tally:
    """Count, over all clients, expected ids never received, repeats and reorderings."""
    expected = sorted(set(expected_ids))
    lost = duplicated = out_of_order = count = 0
    for client in clients:
        count += 1
        ids = client.ids
        seen = set(ids)
        lost += sum(1 for i in expected if i not in seen)
        duplicated += len(ids) - len(seen)
        out_of_order += sum(1 for a, b in zip(ids, ids[1:]) if b <= a)
    return Tally(count, len(expected), lost, duplicated, out_of_order)


async def start_swarm(urls: Iterable[str], *, concurrency: int = 500,
                      **options: object) -> tuple[list[StreamClient], list[asyncio.Task[None]]]:
    """Start one :class:`StreamClient` per url, at most ``concurrency`` connecting at once.

    Returns the clients and their tasks (each runs ``client.run()``).
    """
    gate = asyncio.Semaphore(concurrency)
    clients = [StreamClient(url, **options) for url in urls]  # type: ignore[arg-type]

    async def run(client: StreamClient) -> None:
        async with gate:
            task = asyncio.create_task(client.run())
            while not task.done() and not (client.connects and (
                    client.connects[-1].status or client.connects[-1].ended)):
                await asyncio.sleep(0.005)
        await task

    tasks = [asyncio.create_task(run(c)) for c in clients]
    return clients, tasks


async def stop_all(clients: Iterable[StreamClient], tasks: Iterable[asyncio.Task[None]]) -> None:
    """Stop every client and wait for their tasks."""
    for client in clients:
        client.stop()
    await asyncio.gather(*tasks, return_exceptions=True)


class Swarm:
    """Clients started together, connected before use and stopped on exit.

    ``async with Swarm(urls, **options) as swarm:`` starts one :class:`StreamClient`
    per url (``options`` as :class:`StreamClient` takes them), waits until every one
    is connected (``connect_timeout``; :attr:`connected_in` is how long it took) and
    stops them all when the block ends, however it ends.
    """

    def __init__(self, urls: Iterable[str], *, connect_timeout: float = 30,
                 concurrency: int = 500, **options: object) -> None:
        self.urls = list(urls)
        self.connect_timeout = connect_timeout
        self.concurrency = concurrency
        self.options = options
        self.clients: list[StreamClient] = []
        self.tasks: list[asyncio.Task[None]] = []
        #: Seconds until every client was connected.
        self.connected_in = 0.0

    async def __aenter__(self) -> "Swarm":
        self.clients, self.tasks = await start_swarm(self.urls, concurrency=self.concurrency,
                                                     **self.options)
        try:
            self.connected_in = await wait_until(
                lambda: all(c.connected for c in self.clients), self.connect_timeout,
                what=f"{len(self.clients)} clients connected")
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop every client and wait for them."""
        await stop_all(self.clients, self.tasks)


__all__ = ["Connect", "FastParser", "StreamClient", "Swarm", "Tally", "probe", "start_swarm",
           "stop_all", "tally"]
