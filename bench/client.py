"""The benchmark's load client: thousands of SSE connections in one process, cheaply.

Every system is driven by the same client. It speaks HTTP/1.1 over real sockets
(one ``asyncio.Protocol`` per connection, no task per connection), decodes the
chunked body with the HTTP/1.1 pieces the tests' load client uses (``tests.http1``) and
parses every event frame it receives: the id, and the send timestamp ``"t"``
that the benchmark puts first in every payload (wrapped in ``"data"`` on a
stream of many executions), from which it takes the latency. It does less per
event than the spec-conforming parser of the tests (it needs no event objects),
so that at 200,000 events per second the client is not what is being measured.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from urllib.parse import urlsplit

from tests.http1 import ChunkedDecoder, parse_head, request_bytes


class Sink:
    """What all connections of one measurement received."""

    def __init__(self) -> None:
        #: Seconds from the payload's send timestamp to its arrival, per event.
        self.latencies = array("d")
        self.events = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.record_latency = True

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


class Stream(asyncio.Protocol):
    """One SSE connection."""

    __slots__ = ("request", "sink", "transport", "status", "chunked", "decoder", "head",
                 "pending", "events", "last_id", "ids_ok", "started", "connected_at",
                 "closed", "ready")

    def __init__(self, request: bytes, sink: Sink, ready: asyncio.Future[None]) -> None:
        self.request = request
        self.sink = sink
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.chunked = False
        self.decoder: ChunkedDecoder | None = None
        self.head = b""
        self.pending = b""
        self.events = 0
        self.last_id = 0
        #: False once an id arrived that was not the previous one + 1 (loss, repeat, reorder).
        self.ids_ok = True
        self.started = time.monotonic()
        self.connected_at = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status, self.chunked = parse_head(self.head[:end + 4])
            data, self.head = self.head[end + 4:], b""
            self.connected_at = time.monotonic()
            if self.chunked:
                self.decoder = ChunkedDecoder()
            if self.status != 200 and not self.ready.done():
                self.ready.set_result(None)
        if self.decoder is not None:
            data = self.decoder.feed(data)
        if not data:
            return
        if not self.ready.done():  # a stream is live once its first bytes (the preamble) arrived
            self.connected_at = time.monotonic()
            self.ready.set_result(None)
        self.pending += data
        if b"\n\n" not in data and b"\n\n" not in self.pending[-len(data) - 1:]:
            return
        frames = self.pending.split(b"\n\n")
        self.pending = frames.pop()
        now = time.time()
        sink = self.sink
        for frame in frames:
            # The payload starts with "t"; on a stream of many it is wrapped ({"data":{"t":...).
            start = frame.find(b'{"t":')
            if start < 0:
                continue  # comments, keepalives, the preamble
            if frame.startswith(b"id: "):
                raw_id = frame[4:frame.index(b"\n")]
                if raw_id.isdigit():  # a stream of many sends a cursor instead
                    event_id = int(raw_id)
                    if event_id != self.last_id + 1:
                        self.ids_ok = False
                    self.last_id = event_id
            self.events += 1
            sink.events += 1
            if sink.record_latency:
                sink.latencies.append(now - float(frame[start + 5:frame.index(b",", start)]))
        if not sink.first_at:
            sink.first_at = now
        sink.last_at = now

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def open_streams(urls: list[str], sink: Sink, concurrency: int = 1000,
                       timeout: float = 60) -> tuple[list[Stream], float]:
    """Connect one stream per url (``concurrency`` at a time); return them and the seconds it took.

    A stream counts as connected when its first body bytes (the preamble) arrived,
    or when it got another status than 200, or failed.
    """
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    streams: list[Stream] = []
    started = time.monotonic()

    async def one(url: str) -> None:
        parts = urlsplit(url)
        async with gate:
            ready = loop.create_future()
            stream = Stream(request_bytes(url), sink, ready)
            streams.append(stream)
            try:
                await loop.create_connection(lambda: stream, parts.hostname, parts.port)
                await ready
            except OSError:
                stream.closed = True

    await asyncio.wait_for(asyncio.gather(*(one(u) for u in urls)), timeout)
    return streams, time.monotonic() - started


def close_all(streams: list[Stream]) -> None:
    for stream in streams:
        stream.close()
