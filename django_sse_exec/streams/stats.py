"""What one stream did, counted where it writes and reported once when it ends.

The stream generator calls :meth:`StreamTally.wrote` for each piece it hands to
the server and :meth:`StreamTally.ended` in its ``finally``; the tally turns
that into metrics (:mod:`django_sse_exec.telemetry.metrics`) and one structured INFO line
per stream end on the ``django_sse_exec.streams`` logger::

    stream ended execution=exec-42 reason=closed events=17 duration=3.204s entry_point=view

The same fields are attached to the record as ``record.sse_stream`` (a dict) for
JSON formatters. No line carries the request's URL or token.

Events are counted from the bytes: every frame the app writes has its
``event:`` field at the start of a line, and event data is one line of JSON, so
a line starting with ``event:`` is always a real field.
"""

from __future__ import annotations

import logging
import time

from ..telemetry import metrics

logger = logging.getLogger("django_sse_exec.streams")

_EVENT = b"\nevent: "
_RESERVED = b"event: stream-"
_RESET = b"event: stream-reset\n"
_CLOSED = b"\nevent: stream-closed\n"
#: Reasons the hub gives for ending a stream, as they are; any other one is a drop.
_PLANNED = ("shutdown", "lifetime", "reset", "token_expired")
#: The end reason of a stream whose client went away during a write made for it by the
#: fan-out (:mod:`.write_now`): counted as the client's going, like one during its own write.
GONE_MID_WRITE = "client went away mid-write"


class StreamTally:
    """Counters of one stream; create it once the stream is subscribed."""

    __slots__ = ("execution_id", "entry_point", "started", "events", "closed", "failed")

    def __init__(self, execution_id: str, entry_point: str) -> None:
        self.execution_id = execution_id
        self.entry_point = entry_point
        self.started = time.monotonic()
        self.events = 0
        #: True once ``stream-closed`` was written.
        self.closed = False
        #: Set by the stream when it ended on an error.
        self.failed = False
        metrics.stream_opened(entry_point)

    def wrote(self, chunk: bytes) -> None:
        """The stream hands ``chunk`` to the server."""
        events = chunk.count(_EVENT) + chunk.startswith(b"event: ")
        if not events:
            return
        self.events += events
        resets = 0
        if _RESERVED in chunk:  # one scan; the reserved events themselves are rare
            resets = chunk.count(_RESET)
            self.closed = self.closed or _CLOSED in chunk
        metrics.delivered(self.entry_point, events, resets)

    def reason(self, end_reason: str | None) -> str:
        """Why the stream ended, as one of :data:`~django_sse_exec.telemetry.metrics.END_REASONS`.

        ``end_reason`` is what the hub set (shutdown, lifetime, reset, or why it
        dropped a slow client); none, not closed and no error means the client
        went (or the server cancelled the stream).
        """
        if self.closed:
            return "closed"
        if end_reason in _PLANNED:
            return end_reason
        if end_reason == GONE_MID_WRITE:
            return "client_gone"
        if end_reason is not None:
            return "slow"
        return "error" if self.failed else "client_gone"

    def ended(self, end_reason: str | None) -> None:
        """Report the stream's end: metrics and one INFO line. Never raises (it runs
        in the stream's cleanup)."""
        try:
            self._report(self.reason(end_reason))
        except Exception:
            logger.exception("could not report the end of a stream of %s", self.execution_id)

    def _report(self, reason: str) -> None:
        duration = time.monotonic() - self.started
        metrics.stream_ended(self.entry_point, reason, duration)
        fields = {"execution": self.execution_id, "reason": reason, "events": self.events,
                  "duration": round(duration, 3), "entry_point": self.entry_point}
        logger.info("stream ended execution=%s reason=%s events=%d duration=%.3fs "
                    "entry_point=%s", self.execution_id, reason, self.events, duration,
                    self.entry_point, extra={"sse_stream": fields})


__all__ = ["StreamTally"]
