"""Where one stream is in its execution's log, and how events become its bytes.

A stream sends each id once and in order: the cursor drops what was sent
already, notices ids that cannot be had any more (a trimmed history, a lost
log) and says so with ``stream-reset``, and writes a hub batch as it is when
the stream is exactly where the batch starts.
"""

from __future__ import annotations

from ..hub.subscriber import Batch
from ..render.formats import JSON, Render
from ..store import LogSlice
from ..telemetry import metrics
from ..wire import STREAM_CLOSED


class Cursor:
    """What one stream has sent so far, and how to turn log reads into bytes."""

    __slots__ = ("execution_id", "last_sent", "done", "render")

    def __init__(self, execution_id: str, after: int, render: Render = JSON) -> None:
        self.execution_id = execution_id
        self.last_sent = after
        self.done = False
        self.render = render

    def take_slice(self, log: LogSlice, out: list[bytes]) -> None:
        """Append the frames of ``log`` past ``last_sent``; note a trimmed history."""
        metrics.replayed(sum(1 for event in log.events if event.id > self.last_sent))
        if log.events:
            self.jump(log.events[0].id, out)
        for event in log.events:
            if self.wants(event.id):
                self.take(event.id, event.event, self.render.frame(event), out)

    def wants(self, event_id: int) -> bool:
        return event_id > self.last_sent and not self.done

    def jump(self, event_id: int, out: list[bytes]) -> None:
        """Before sending ``event_id``: if ids in between are not to be had (the
        history was trimmed, or the log lost and recreated), say so with ``stream-reset``."""
        if event_id > self.last_sent + 1 and self.last_sent > 0:
            out.append(self.render.reset(self.execution_id, self.last_sent, event_id))
            self.last_sent = event_id - 1

    def take_batch(self, batch: Batch, out: list[bytes]) -> None:
        """Append what of ``batch`` was not sent yet (all of it at once, usually)."""
        if batch.last <= self.last_sent or self.done:
            return
        if batch.first == self.last_sent + 1:
            out.append(self.render.batch(batch))
            self.last_sent = batch.last
            self.done = batch.closing
            return
        for entry in batch.events:
            if self.wants(entry[0]):
                self.take(entry[0], entry[1], self.render.entry(entry), out)

    def take(self, event_id: int, event: str, data: bytes, out: list[bytes]) -> None:
        if not self.wants(event_id):
            return
        out.append(data)
        self.last_sent = event_id
        if event == STREAM_CLOSED:
            self.done = True
