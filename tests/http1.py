"""The HTTP/1.1 pieces of a raw-socket SSE client, shared by the tests and the benchmark.

Both load clients (:mod:`tests.loadclient`, one task per stream, and
``bench.client``, one protocol object per stream) open a plain TCP socket, write
a GET, read the response head and decode a chunked body. Those steps live here,
once: :func:`open_socket`, :func:`request_bytes`, :func:`parse_head` and
:class:`ChunkedDecoder`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit


class ChunkedDecoder:
    """Incremental decoder of an HTTP/1.1 ``Transfer-Encoding: chunked`` body."""

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0  # bytes left in the current chunk's data
        self._skip_crlf = False
        #: True once the terminating zero-size chunk arrived.
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


def parse_head(head: bytes) -> tuple[int, bool]:
    """A response head (status line and headers) -> (status, body is chunked)."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    chunked = any(line.lower().startswith("transfer-encoding:") and "chunked" in line.lower()
                  for line in lines[1:])
    return status, chunked


def request_bytes(url: str, last_event_id: int | str | None = None,
                  headers: Mapping[str, str] | None = None) -> bytes:
    """The GET request of an ``EventSource`` for ``url`` (absolute), resuming after an id."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream",
             "Cache-Control: no-cache"]
    if last_event_id is not None:
        lines.append(f"Last-Event-ID: {last_event_id}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def open_socket(url: str, rcvbuf: int | None = None
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to ``url``'s host and port (``rcvbuf``: SO_RCVBUF before connecting)."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port or 80))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=1 << 20)


__all__ = ["ChunkedDecoder", "open_socket", "parse_head", "request_bytes"]
