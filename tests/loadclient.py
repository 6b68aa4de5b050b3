"""An asyncio raw-socket SSE client that can hold thousands of streams at once.

Each :class:`StreamClient` behaves like a browser's ``EventSource``: it opens a
plain HTTP/1.1 connection, decodes the chunked body, parses events with the
spec-conforming :class:`tests.sse.SSEParser`, and when the stream ends or the
connection drops it waits the server's ``retry:`` delay and reconnects with
``Last-Event-ID``. It stops for good after ``stream-closed``, on a 204, or when
told to. A client can also connect and never read (with a tiny receive buffer)
to play a stalled browser.

:func:`run_swarm` drives many clients and :func:`tally` turns what they received
into lost / duplicated / out-of-order counts, so load and fault tests (and the
benchmark) share one way of measuring.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.sse import SSEEvent, SSEParser

#: Event names that end an execution's stream for good.
FINAL_EVENT = "stream-closed"


class _Chunked:
    """Incremental decoder of an HTTP/1.1 ``Transfer-Encoding: chunked`` body."""

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0  # bytes left in the current chunk's data
        self._skip_crlf = False
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        """Decode what ``data`` completes; return the body bytes it carried."""
        self._buffer += data
        out = bytearray()
        while self._buffer and not self.finished:
            if self._skip_crlf:
                if len(self._buffer) < 2:
                    break
                self._buffer = self._buffer[2:]
                self._skip_crlf = False
            if self._remaining:
                take = self._buffer[: self._remaining]
                out += take
                self._buffer = self._buffer[len(take):]
                self._remaining -= len(take)
                if not self._remaining:
                    self._skip_crlf = True
                continue
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self._buffer[:line_end].split(b";")[0], 16)
            self._buffer = self._buffer[line_end + 2:]
            if size == 0:
                self.finished = True
            else:
                self._remaining = size
        return bytes(out)


@dataclass
class Connect:
    """What one connection attempt gave."""

    #: Response status (0 until the headers arrived).
    status: int
    #: Seconds from starting the connect to the response headers.
    seconds: float
    #: How the response ended: "eof" (server ended it), "reset", "final", "stopped", "status".
    ended: str = ""
    #: Events received on this connection.
    events: int = 0


@dataclass
class StreamClient:
    """One ``EventSource``-like stream over a raw socket.

    ``url`` is absolute (``http://host:port/path?query``). ``last_event_id`` is
    where to resume. ``max_retry_ms`` caps the server's ``retry:`` delay (tests
    run faster; None obeys the server). ``read=False`` connects and then never
    reads (set ``rcvbuf`` small so the server's writes back up quickly).
    """

    url: str
    last_event_id: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reconnect: bool = True
    max_retry_ms: int | None = None
    read: bool = True
    rcvbuf: int | None = None
    #: Every event received, in arrival order, across reconnects.
    events: list[SSEEvent] = field(default_factory=list)
    connects: list[Connect] = field(default_factory=list)
    #: The last ``retry:`` value the server sent (milliseconds).
    retry_ms: int | None = None
    #: Set when the stream ended for good (``stream-closed`` or 204).
    finished: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _writer: asyncio.StreamWriter | None = None

    @property
    def ids(self) -> list[int]:
        """Ids of the received events that carried one, in arrival order."""
        return [int(e.id) for e in self.events if e.id is not None and e.id.isdigit()]

    def stop(self) -> None:
        """Make :meth:`run` return (closing the current connection)."""
        self._stop.set()
        if self._writer is not None:
            self._writer.transport.abort()

    async def run(self, connect_timeout: float = 30) -> None:
        """Stream, reconnecting as a browser would, until finished or stopped."""
        while not self._stop.is_set():
            attempt = Connect(0, 0.0)
            self.connects.append(attempt)
            try:
                await self._connect_once(attempt, connect_timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                attempt.ended = attempt.ended or ("stopped" if self._stop.is_set() else "reset")
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

    def _request(self) -> bytes:
        parts = urlsplit(self.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream",
                 "Cache-Control: no-cache"]
        if self.last_event_id is not None:
            lines.append(f"Last-Event-ID: {self.last_event_id}")
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parts = urlsplit(self.url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port or 80))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, limit=1 << 20)

    async def _connect_once(self, attempt: Connect, timeout: float) -> None:
        started = time.monotonic()
        reader, writer = await asyncio.wait_for(self._open(), timeout)
        self._writer = writer
        try:
            writer.write(self._request())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            attempt.status, chunked = _parse_head(head)
            attempt.seconds = time.monotonic() - started
            status = attempt.status
            if status == 204:
                attempt.ended = "final"
                self.finished = True
                return
            if status != 200:
                attempt.ended = "status"
                self.finished = True
                return
            if not self.read:
                await self._stop.wait()
                attempt.ended = "stopped"
                return
            await self._read_body(reader, attempt, chunked)
        finally:
            self._writer = None
            writer.transport.abort()

    async def _read_body(self, reader: asyncio.StreamReader, attempt: Connect,
                         chunked: bool) -> None:
        parser = SSEParser(last_event_id=None if self.last_event_id is None
                           else str(self.last_event_id))
        decoder = _Chunked() if chunked else None
        while True:
            data = await reader.read(65536)
            if not data:
                attempt.ended = attempt.ended or "eof"
                return
            body = decoder.feed(data) if decoder else data
            for event in parser.feed(body):
                self.events.append(event)
                attempt.events += 1
                if event.id is not None and event.id.isdigit():
                    self.last_event_id = int(event.id)
                if event.event == FINAL_EVENT:
                    attempt.ended = "final"
                    self.finished = True
                    return
            if parser.retry is not None:
                self.retry_ms = parser.retry
            if decoder is not None and decoder.finished:
                attempt.ended = "eof"
                return


def _parse_head(head: bytes) -> tuple[int, bool]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    chunked = any(line.lower().startswith("transfer-encoding:") and "chunked" in line.lower()
                  for line in lines[1:])
    return status, chunked


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
    """Start one :class:`StreamClient` per url (at most ``concurrency`` connecting at once).

    Returns the clients and their running tasks; each task runs ``client.run()``.
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


async def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05,
                     what: str = "condition") -> float:
    """Poll ``predicate`` until true; return the seconds it took, raise TimeoutError after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(interval)
    return time.monotonic() - started


async def stop_all(clients: Iterable[StreamClient], tasks: Iterable[asyncio.Task[None]]) -> None:
    """Stop every client and wait for their tasks."""
    for client in clients:
        client.stop()
    await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["Connect", "StreamClient", "Tally", "start_swarm", "stop_all", "tally", "wait_until"]
