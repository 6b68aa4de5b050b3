"""The wire format of streams that carry many executions, as pure functions.

A multi stream (a fixed set of executions, or a feed) sends each event under its
own name, with data ``{"executionId": …, "id": n, "data": <the event's data>}``.
Its ``id:`` is an opaque cursor: where the client is in *every* execution at
once, so a reconnect resumes each of them exactly. The cursor lists positions by
key (an execution's index in a fixed set, or the id of the feed entry that added
it; ``f`` is the feed's own log), base 36, zeros left out::

    id: 0-2s.3-k.f-5

Like :mod:`.wire`, everything here is validation and encoding, with no I/O:
the cursor is parsed defensively (garbage means "from the start") and frames
are built from data that was validated when it was sent.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys

from . import EXECUTION_ID_RE, Event, is_valid_execution_id

#: Feed names: like execution ids, plus ``:`` (``user:42``, ``team:7``), at most 40.
FEED_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,39}")
#: Sent on a feed stream when an execution joins the feed.
EXECUTION_ADDED = "execution-added"
#: The cursor key of a feed's own log.
FEED_KEY = "f"
#: Longest cursor accepted from a client (about 100 executions of long histories).
MAX_CURSOR_LENGTH = 8192
_BREAKS = ("\r", "\n", "\0")
_PAIR = re.compile(r"([0-9a-z]{1,12})-([0-9a-z]{1,13})")


def validate_feed_name(feed: object) -> str:
    """Return ``feed`` if it is a valid feed name, else raise ``TypeError``/``ValueError``."""
    if not isinstance(feed, str):
        raise TypeError(f"feed must be a str, not {type(feed).__name__}")
    if not FEED_NAME_RE.fullmatch(feed):
        raise ValueError(f"invalid feed name {feed[:80]!r}: use 1-40 characters of "
                         "A-Z a-z 0-9 . _ : -, starting with a letter or digit")
    return feed


def feed_log_id(feed: str) -> str:
    """The id under which a feed's own log is stored and published.

    It starts with ``_``, which no execution id can, so a feed never shares a
    log with an execution; ``_`` and ``:`` are escaped so two feeds never share one.
    """
    return "_f" + feed.replace("_", "__").replace(":", "_c")


def parse_ids(value: object, limit: int) -> list[str] | None:
    """A fixed set's ``?ids=a,b,c``: distinct valid ids in order, or None if invalid."""
    if not isinstance(value, str) or not value:
        return None
    ids = [sys.intern(i) for i in value.split(",")]  # shared by every stream of the id
    if len(ids) > limit or len(set(ids)) != len(ids) or not all(map(is_valid_execution_id, ids)):
        return None
    return ids


def set_digest(execution_ids: list[str]) -> str:
    """What a token for a fixed set signs: a digest of the ids, in order."""
    return hashlib.sha256(",".join(execution_ids).encode()).hexdigest()[:32]


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def cursor_pair(key: str, position: int) -> str:
    """One execution's part of a cursor (empty at position 0)."""
    return f"{key}-{_b36(position)}" if position else ""


def parse_cursor(value: str | None) -> dict[str, int] | None:
    """A client's multi cursor as ``{key: position}``; None for none or garbage.

    Garbage (a single stream's numeric id, a forged or truncated value) means
    "no position": the client gets every execution from the start, as a single
    stream does.
    """
    if not value:
        return None
    value = value.strip()
    if len(value) > MAX_CURSOR_LENGTH or not value.isascii():
        return None
    positions: dict[str, int] = {}
    for pair in value.split("."):
        match = _PAIR.fullmatch(pair)
        if match is None or match[1] in positions:
            return None
        positions[match[1]] = int(match[2], 36)
    return positions or None


@functools.lru_cache(maxsize=4096)
def key_of(number: int) -> str:
    """The cursor key of an index or a feed entry id."""
    return _b36(number)


def multi_frame(cursor: str, execution_id: str, event: Event) -> bytes:
    """One event of a multi stream: its own name, wrapped data, the cursor as ``id:``."""
    if not EXECUTION_ID_RE.fullmatch(execution_id) or any(
            c in event.event or c in event.data for c in _BREAKS):
        raise ValueError(f"event {event.id} of {execution_id!r} cannot be framed safely")
    data = f'{{"executionId":"{execution_id}","id":{int(event.id)},"data":{event.data}}}'
    return f"id: {cursor}\nevent: {event.event}\ndata: {data}\n\n".encode()


def added_frame(cursor: str, feed: str, execution_id: str) -> bytes:
    """The ``execution-added`` event of a feed stream."""
    data = json.dumps({"executionId": execution_id, "feed": feed}, separators=(",", ":"))
    return f"id: {cursor}\nevent: {EXECUTION_ADDED}\ndata: {data}\n\n".encode()


__all__ = [
    "EXECUTION_ADDED", "FEED_KEY", "FEED_NAME_RE", "added_frame", "cursor_pair", "feed_log_id",
    "key_of", "multi_frame", "parse_cursor", "parse_ids", "set_digest", "validate_feed_name",
]
