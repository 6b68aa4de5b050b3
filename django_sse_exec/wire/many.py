"""The wire format of streams that carry many executions, as pure functions.

A multi stream (a fixed set of executions, or a feed) sends each event under its
own name, with data ``{"executionId": …, "id": n, "data": <the event's data>}``.
Its ``id:`` is an opaque cursor: where the client is in *every* execution at
once, so a reconnect resumes each of them exactly. The cursor lists positions by
key, both base 36, as ``key-position`` pairs joined by ``.``.

A fixed set's keys are the executions' indexes in the set (zeros left out)::

    id: 0-2s.3-k

A feed's cursor puts the feed's own position in a slot of its own, before a
``~``, and keys each execution the stream follows by the id of its latest entry
in the feed (zeros kept: the client has heard of the execution)::

    id: 5~1-2s.3-k.5-0

No key can be the feed's position: the two are told apart by where they stand,
not by what they spell (``~`` is in no key or position, and every pair is after
it). The first form of feed cursors put the feed's position in a pair of key
``f``, which is also the key of entry 15 (``0-2s.f-5``): such a cursor has no
``~``, so it is no feed cursor at all, and its client gets a full replay, never
a position read from the wrong slot. A feed cursor is no set cursor either.

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
from collections.abc import Iterable

from . import EXECUTION_ID_RE, STREAM_RESET, Event, is_valid_execution_id

#: Feed names: like execution ids, plus ``:`` (``user:42``, ``team:7``), at most 40.
FEED_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,39}")
#: Sent on a feed stream when an execution joins the feed (and its stream follows it).
EXECUTION_ADDED = "execution-added"
#: Sent on a feed stream when it stops following an execution (it left the stream's window).
EXECUTION_REMOVED = "execution-removed"
#: Where a feed cursor's own position ends and its executions' pairs begin.
FEED_SLOT = "~"
#: Longest cursor accepted from a client (about 100 executions of long histories).
MAX_CURSOR_LENGTH = 8192
_BREAKS = ("\r", "\n", "\0")
_PAIR = re.compile(r"([0-9a-z]{1,12})-([0-9a-z]{1,13})")
_POSITION = re.compile(r"[0-9a-z]{1,13}")


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
    """One execution's part of a set's cursor (empty at position 0)."""
    return f"{key}-{_b36(position)}" if position else ""


def feed_pair(key: str, position: int) -> str:
    """One execution's part of a feed's cursor (kept at position 0)."""
    return f"{key}-{_b36(position)}"


def feed_cursor(position: int, pairs: Iterable[str]) -> str:
    """A feed stream's cursor: the feed's own ``position``, then the executions' pairs."""
    return f"{_b36(position)}{FEED_SLOT}{'.'.join(pairs)}"


def _clean(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    return value if len(value) <= MAX_CURSOR_LENGTH and value.isascii() else None


def _pairs(text: str) -> dict[str, int] | None:
    positions: dict[str, int] = {}
    for pair in text.split("."):
        match = _PAIR.fullmatch(pair)
        if match is None or match[1] in positions:
            return None
        positions[match[1]] = int(match[2], 36)
    return positions


def parse_cursor(value: str | None) -> dict[str, int] | None:
    """A client's set cursor as ``{key: position}``; None for none or garbage.

    Garbage (a single stream's numeric id, a feed's cursor, a forged or
    truncated value) means "no position": the client gets every execution from
    the start, as a single stream does.
    """
    value = _clean(value)
    return (_pairs(value) or None) if value else None


def parse_feed_cursor(value: str | None, limit: int) -> tuple[int, dict[str, int]] | None:
    """A client's feed cursor as ``(the feed's position, {key: position})``; None for
    none or garbage (a cursor of the first form, a set's, more than ``limit`` pairs)."""
    value = _clean(value)
    if value is None or value.count(FEED_SLOT) != 1:
        return None
    head, _, tail = value.partition(FEED_SLOT)
    pairs = _pairs(tail) if tail else {}
    if not _POSITION.fullmatch(head) or pairs is None or len(pairs) > limit:
        return None
    return int(head, 36), pairs


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


def membership_frame(cursor: str, event: str, feed: str, execution_id: str) -> bytes:
    """A feed stream's ``execution-added`` or ``execution-removed`` event."""
    data = json.dumps({"executionId": execution_id, "feed": feed}, separators=(",", ":"))
    return f"id: {cursor}\nevent: {event}\ndata: {data}\n\n".encode()


def feed_reset_frame(feed: str, requested: int, first_retained: int) -> bytes:
    """The ``stream-reset`` of a feed whose entries past the client's position are gone
    (no id: the stream starts over, announcing what it follows)."""
    data = json.dumps({"feed": feed, "requestedAfter": requested,
                       "firstRetainedId": first_retained}, separators=(",", ":"))
    return f"event: {STREAM_RESET}\ndata: {data}\n\n".encode()


__all__ = [
    "EXECUTION_ADDED", "EXECUTION_REMOVED", "FEED_NAME_RE", "FEED_SLOT", "cursor_pair",
    "feed_cursor", "feed_log_id", "feed_pair", "feed_reset_frame", "key_of", "membership_frame",
    "multi_frame", "parse_cursor", "parse_feed_cursor", "parse_ids", "set_digest",
    "validate_feed_name",
]
