"""Redis replies (RESP2) read from raw bytes: hiredis's reader when installed, else a small one.

Part of :mod:`django_sse_exec.layer.redis`. The hub's own pub/sub connection
(:mod:`.direct`) parses what Redis sends in the very callback that received
the bytes, as the raw reference server does, instead of going through
redis-py's connection and pub/sub machinery. A subscribed connection only ever
receives arrays of bulk strings and integers (``message``, ``subscribe``,
``unsubscribe``, ``pong``), simple strings (``AUTH``'s ``OK``) and errors, so
the Python reader handles exactly RESP2; hiredis (the ``[fast]`` extra) does
the same in C.
"""

from __future__ import annotations

import importlib
from typing import Any

hiredis: Any  # typed the same with or without the [fast] extra installed
try:
    hiredis = importlib.import_module("hiredis")
except ImportError:  # pragma: no cover - without the [fast] extra
    hiredis = None


class ReplyError(Exception):
    """An error reply (``-ERR ...``) from Redis."""


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


class PyReader:
    """RESP2 replies from fed bytes, in pure Python: ``feed(data)``, then ``gets()`` until False."""

    def __init__(self) -> None:
        self._buffer = b""
        self._pos = 0

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        if self._pos:
            self._buffer = self._buffer[self._pos:]
            self._pos = 0
        self._buffer += data

    def gets(self) -> Any:
        """The next complete reply, or False if the bytes so far end inside one."""
        try:
            reply, end = self._parse(self._pos)
        except _Incomplete:
            return False
        self._pos = end
        return reply

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self._buffer.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        return self._buffer[pos:end], end + 2

    def _parse(self, pos: int) -> tuple[Any, int]:
        line, pos = self._line(pos)
        if not line:
            raise _Incomplete
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None, pos
            if len(self._buffer) < pos + size + 2:
                raise _Incomplete
            return self._buffer[pos:pos + size], pos + size + 2
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None, pos
            items = []
            for _ in range(count):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        if kind == b":":
            return int(rest), pos
        if kind == b"+":
            return rest, pos
        if kind == b"-":
            return ReplyError(rest.decode(errors="replace")), pos
        raise ValueError(f"not a RESP2 reply: {line[:40]!r}")


def make_reader() -> Any:
    """A reader of RESP2 replies: hiredis's when installed, else :class:`PyReader`.

    Either gives error replies as exception instances (test with :func:`is_error`).
    """
    if hiredis is not None:
        return hiredis.Reader()
    return PyReader()


def is_error(reply: Any) -> bool:
    """Whether ``reply`` is an error reply of either reader."""
    return isinstance(reply, Exception)


def pack(*args: str | bytes) -> bytes:
    """One command in RESP2 (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


__all__ = ["PyReader", "ReplyError", "is_error", "make_reader", "pack"]
