"""Server-Sent Events encoding and input validation, as pure functions.

Everything that ends up on the wire passes through here, so this is where
injection is made impossible: execution ids and event names are checked against
strict patterns (no CR, LF or NUL can ever reach a field), data is compact JSON
(which has no raw newlines) and is checked to encode as UTF-8 before anything is
stored or sent. Frames are built once per event and shared by every client.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from django.core.serializers.json import DjangoJSONEncoder

#: Execution ids: 1-64 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit
#: (so ``.`` and ``..`` can never be path segments, and no id reaches outside the
#: app's Redis keys or channel-layer groups: no ``:``, ``*``, ``{``, spaces or
#: non-ASCII look-alikes).
EXECUTION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EVENT_NAME_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
RESERVED_PREFIX = "stream-"

#: Sent as the final event of every execution; data ``{"executionId", "lastEventId"}``.
STREAM_CLOSED = "stream-closed"
#: Sent first when the history a client asked for has been trimmed.
STREAM_RESET = "stream-reset"

KEEPALIVE = b": keepalive\n\n"


class Event(NamedTuple):
    """One logged event: its id in the execution, its name and its JSON text."""

    id: int
    event: str
    data: str


def validate_execution_id(execution_id: Any) -> str:
    """Return ``execution_id`` if it matches :data:`EXECUTION_ID_RE`, else raise.

    Raises ``TypeError`` for a non-string and ``ValueError`` for a bad string.
    """
    if not isinstance(execution_id, str):
        raise TypeError(f"execution_id must be a str, not {type(execution_id).__name__}")
    if not EXECUTION_ID_RE.fullmatch(execution_id):
        raise ValueError(
            f"invalid execution_id {execution_id[:80]!r}: use 1-64 characters of "
            "A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return execution_id


def is_valid_execution_id(execution_id: Any) -> bool:
    """True if :func:`validate_execution_id` would accept ``execution_id``."""
    return isinstance(execution_id, str) and bool(EXECUTION_ID_RE.fullmatch(execution_id))


#: Representations a stream can be asked for (``?format=``).
FORMATS = ("json", "html")
DEFAULT_FORMAT = "json"


def validate_format(value: Any) -> str:
    """Return ``value`` if it is one of :data:`FORMATS`, else raise ``ValueError``."""
    if value not in FORMATS:
        raise ValueError(f"unknown stream format {value!r}: use one of {', '.join(FORMATS)}")
    return value


def validate_event_name(event: Any) -> str:
    """Return ``event`` if it is a valid, non-reserved event name, else raise.

    Valid names are 1–64 of ``A-Z a-z 0-9 . _ : -`` and do not start with
    ``stream-`` (reserved for the app's own control events).
    """
    if not isinstance(event, str):
        raise TypeError(f"event must be a str, not {type(event).__name__}")
    if not EVENT_NAME_RE.fullmatch(event):
        raise ValueError(
            f"invalid event name {event[:80]!r}: use 1-64 characters of A-Z a-z 0-9 . _ : -"
        )
    if event.startswith(RESERVED_PREFIX):
        raise ValueError(f"event name {event!r} is reserved: names starting with "
                         f"{RESERVED_PREFIX!r} belong to the stream itself")
    return event


def encode_data(data: Any, max_bytes: int | None = None) -> str:
    """Encode ``data`` as compact JSON text (``DjangoJSONEncoder``, ``ensure_ascii=False``).

    Raises ``TypeError`` if ``data`` is not JSON-serialisable, ``ValueError`` if it
    contains text that cannot be UTF-8 encoded (lone surrogates), is NaN/Infinity,
    is circular or nested too deeply, or encodes to more than ``max_bytes`` bytes.
    """
    try:
        text = json.dumps(
            data,
            cls=DjangoJSONEncoder,
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"event data is not JSON-serialisable: {exc}") from exc
    except RecursionError as exc:
        raise ValueError("event data is not JSON-serialisable: nested too deeply") from exc
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(f"event data has text that is not valid UTF-8: {exc}") from exc
    if max_bytes is not None and size > max_bytes:
        raise ValueError(
            f"event data is {size} bytes of JSON, over the limit of {max_bytes} "
            "(SSE_EXEC['MAX_EVENT_BYTES'])"
        )
    return text


_BREAKS = ("\r", "\n", "\0")


def frame(event: Event) -> bytes:
    """The SSE bytes of one event: ``id:``, ``event:`` and one ``data:`` line.

    A last line of defence for events that did not come through the validating
    helpers (e.g. written to a shared store by other code): a CR, LF or NUL in
    the name or data raises ``ValueError`` instead of forging SSE fields.
    """
    if any(c in event.event or c in event.data for c in _BREAKS):
        raise ValueError(f"event {event.id} has a line break or NUL in its name or data")
    return f"id: {int(event.id)}\nevent: {event.event}\ndata: {event.data}\n\n".encode()


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def text_frame(event_id: int | None, event: str | None, text: str) -> bytes:
    """An event whose data is any text (an HTML fragment): one ``data:`` line per line.

    Line breaks of every kind (CRLF, CR, LF) split the text into ``data:``
    lines, which the browser joins back with LF, so no line of ``text`` can
    start a field of its own; a NUL becomes U+FFFD. ``event_id`` None sends no
    ``id:`` (the client's Last-Event-ID stays where it was); ``event`` None sends
    an unnamed message (``message`` in ``EventSource``). The name must already
    be valid (see :func:`validate_event_name`).
    """
    if event is not None and any(c in event for c in _BREAKS):
        raise ValueError("an event name has a line break or NUL")
    lines = _LINE_BREAK.split(text.replace("\0", "\ufffd"))
    head = (f"id: {int(event_id)}\n" if event_id is not None else "") + \
        (f"event: {event}\n" if event is not None else "")
    return (head + "".join(f"data: {line}\n" for line in lines) + "\n").encode()


def frames(events: list[Event]) -> bytes:
    """Several events as one chunk, so a burst costs one write."""
    return b"".join(frame(e) for e in events)


def preamble(retry_ms: int) -> bytes:
    """First bytes of every stream: the reconnect delay and a comment.

    The comment makes servers and proxies flush headers at once, so the browser's
    ``onopen`` fires before the first event.
    """
    return f"retry: {int(retry_ms)}\n: connected\n\n".encode()


def closed_data(execution_id: str, last_event_id: int) -> str:
    """Data of the ``stream-closed`` event."""
    return encode_data({"executionId": execution_id, "lastEventId": last_event_id})


def reset_frame(execution_id: str, requested: int, first_retained: int) -> bytes:
    """The ``stream-reset`` event (no id) sent when replay cannot start where asked."""
    data = encode_data(
        {
            "executionId": execution_id,
            "requestedAfter": requested,
            "firstRetainedId": first_retained,
        }
    )
    return f"event: {STREAM_RESET}\ndata: {data}\n\n".encode()


#: Sent before a stream's token expires: a fresh token and the URL to reconnect with.
TOKEN_RENEWED = "stream-token-renewed"
#: Sent when a stream's token expired and was not renewed; the stream then ends.
TOKEN_EXPIRED = "stream-token-expired"
#: The ``retry:`` of an expired token's answer: a day, so a plain ``EventSource``
#: that does not handle :data:`TOKEN_EXPIRED` does not come back with it every few seconds.
EXPIRED_RETRY_MS = 86_400_000


def token_renewed_frame(token: str, url: str, expires: int) -> bytes:
    """The ``stream-token-renewed`` event (no id): the new token, its URL and its expiry (Unix s)."""
    data = encode_data({"token": token, "url": url, "expires": expires})
    return f"event: {TOKEN_RENEWED}\ndata: {data}\n\n".encode()


def token_expired_frame(reason: str) -> bytes:
    """The ``stream-token-expired`` event (no id), after a ``retry:`` of a day."""
    data = encode_data({"reason": reason})
    return f"retry: {EXPIRED_RETRY_MS}\nevent: {TOKEN_EXPIRED}\ndata: {data}\n\n".encode()


def rejoin_hint(retry_ms: int, reason: str) -> bytes:
    """Last bytes of a stream ended on purpose: come back after ``retry_ms``."""
    return f"retry: {int(retry_ms)}\n: reconnect ({reason})\n\n".encode()


def parse_last_event_id(value: str | None) -> int | None:
    """A client's Last-Event-ID as a non-negative int, or None for garbage.

    Garbage (empty, negative, non-numeric, absurdly long) means "no id": the
    client gets a full replay rather than an error.
    """
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 18 or not value.isdigit() or not value.isascii():
        return None
    return int(value)
