"""A spec-conforming SSE parser and a small async client for the tests.

The parser follows the HTML standard's event-stream interpretation (line ends
CR, LF or CRLF; ``field: value`` with one optional space; ``data`` lines joined
with LF; comments start with ``:``), so tests check what a browser would see.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SSEEvent:
    event: str
    data: str
    id: str | None
    #: What a reconnect sends as Last-Event-ID to resume after this event: its id,
    #: or on a stream of many executions the stream's cursor (``id`` is then the
    #: event's id in its execution).
    resume: str | None = None

    def __post_init__(self) -> None:
        if self.resume is None:
            self.resume = self.id

    @property
    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def int_id(self) -> int:
        assert self.id is not None
        return int(self.id)


@dataclass
class SSEParser:
    """Incremental parser: ``feed(bytes)`` returns the events completed so far."""

    last_event_id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id_seen: bool = False
    _pending_cr: bool = False
    _decoder: Any = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        import codecs

        if self._decoder is None:
            self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = self._decoder.decode(chunk)
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = False
        self._buffer += text
        events: list[SSEEvent] = []
        while True:
            positions = [p for p in (self._buffer.find("\r"), self._buffer.find("\n")) if p >= 0]
            if not positions:
                break
            pos = min(positions)
            line = self._buffer[:pos]
            if self._buffer[pos] == "\r":
                if pos + 1 < len(self._buffer):
                    skip = 2 if self._buffer[pos + 1] == "\n" else 1
                else:
                    skip = 1
                    self._pending_cr = True
            else:
                skip = 1
            self._buffer = self._buffer[pos + skip:]
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def __post_init__(self) -> None:
        #: As in browsers: an ``id:`` line fills a buffer that becomes the last
        #: event id only when its event is dispatched (at the blank line), so a
        #: connection cut inside an event does not move the id.
        self._id_buffer = self.last_event_id

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            self.last_event_id = self._id_buffer
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data), self.last_event_id)
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id_buffer = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None


class StreamURL(str):
    """A stream URL that carries which execution a test follows on it (``only``)."""

    only: str | None = None

    @classmethod
    def of(cls, url: str, only: str | None) -> "StreamURL":
        made = cls(url)
        made.only = only
        return made


class SSEClient:
    """One streaming connection over real sockets (httpx), parsed as it arrives."""

    def __init__(self, url: str, headers: dict[str, str] | None = None,
                 only: str | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        #: On a stream of many executions: show only this execution's events, as a
        #: single stream would (default: the URL's own ``only``, see ``StreamURL``).
        self.only = only or getattr(url, "only", None)
        self._ended = False
        self.parser = SSEParser()
        self.events: list[SSEEvent] = []
        self.response: httpx.Response | None = None
        self.raw = b""
        self._client: httpx.AsyncClient | None = None
        self._stream: Any = None
        self._iter: Any = None
        self._ctx: Any = None

    async def connect(self, timeout: float = 10) -> httpx.Response:
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, read=None))
        self._ctx = self._client.stream("GET", self.url, headers=self.headers)
        self.response = await asyncio.wait_for(self._ctx.__aenter__(), timeout)
        self._iter = self.response.aiter_raw()
        return self.response

    async def read_chunk(self, timeout: float = 10) -> bytes:
        """The next raw chunk; b"" at the end of the stream."""
        if self._ended:
            return b""
        try:
            chunk = await asyncio.wait_for(self._iter.__anext__(), timeout)
        except StopAsyncIteration:
            return b""
        except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
            raise TimeoutError(f"no bytes within {timeout} s") from None
        self.raw += chunk
        events = self.parser.feed(chunk)
        self.events.extend(events if self.only is None else self._unwrap(events))
        return chunk

    def _unwrap(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """``only``'s events of a stream of many, as its single stream would send them.

        Its ``stream-closed`` ends the stream for this client (a feed's goes on).
        """
        out = []
        for e in events:
            body = json.loads(e.data)
            if e.event == "execution-added" or body.get("executionId") != self.only:
                continue
            if e.event == "stream-reset":
                out.append(SSEEvent(e.event, e.data, None, resume=e.id))
                continue
            data = json.dumps(body["data"], separators=(",", ":"), ensure_ascii=False)
            out.append(SSEEvent(e.event, data, str(body["id"]), resume=e.id))
            self._ended = self._ended or e.event == "stream-closed"
        return out

    async def wait_for(self, predicate: Any, timeout: float = 10) -> list[SSEEvent]:
        """Read until ``predicate(events)`` is true; return all events so far."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.events):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out; got {[e.event for e in self.events]}")
            if await self.read_chunk(remaining) == b"":
                if predicate(self.events):
                    break
                raise EOFError(f"stream ended; got {[e.event for e in self.events]}")
        return self.events

    async def read_until_closed(self, timeout: float = 15) -> list[SSEEvent]:
        """Read until the server ends the stream."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"stream did not end; got {[e.event for e in self.events]}")
            if await self.read_chunk(remaining) == b"":
                return self.events

    async def close(self) -> None:
        if self._ctx is not None:
            try:
                await self._ctx.__aexit__(None, None, None)
            except Exception:
                pass
        if self._client is not None:
            await self._client.aclose()

    async def __aenter__(self) -> "SSEClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
