"""How a stream of many executions turns events into frames, and the cursor they carry.

One :class:`Mux` per stream holds every execution's position as the cursor
that goes out as each frame's ``id:``; one :class:`MultiRender` per execution
frames its events with that cursor (:mod:`django_sse_exec.wire.many`), advancing
its own position as it frames. Kept apart from a set's stream (:mod:`.sets`) so
the HTML representation (:mod:`.html`), which that stream uses, and feeds
(:mod:`.feeds`) build on it without importing it.
"""

from __future__ import annotations

from ...hub.subscriber import Batch, Entry
from ...render.formats import Render
from ...wire import Event
from ...wire.many import cursor_pair, feed_cursor, feed_pair, multi_frame
from ..cursor import Cursor


class Mux:
    """Where one multi stream is in each of its logs, as the cursor its frames carry."""

    __slots__ = ("_pairs",)

    def __init__(self) -> None:
        self._pairs: dict[str, str] = {}

    def cursor(self, key: str, position: int) -> str:
        """The cursor once the log of ``key`` is at ``position``."""
        pair = cursor_pair(key, position)
        if pair:
            self._pairs[key] = pair
        else:
            self._pairs.pop(key, None)
        return ".".join(self._pairs.values())


class FeedMux(Mux):
    """A feed stream's cursor: the feed's own ``position`` in its slot, then a pair per
    execution it follows, kept at position 0 (the client has heard of it)."""

    __slots__ = ("position",)

    def __init__(self) -> None:
        super().__init__()
        #: The last entry of the feed's log the stream has taken.
        self.position = 0

    def cursor(self, key: str, position: int) -> str:
        self._pairs[key] = feed_pair(key, position)
        return self.current()

    def current(self) -> str:
        """The cursor as it stands."""
        return feed_cursor(self.position, self._pairs.values())

    def drop(self, key: str) -> None:
        """Forget the execution of ``key`` (the stream no longer follows it)."""
        self._pairs.pop(key, None)

    def rename(self, old: str, new: str) -> None:
        """Key an execution by ``new`` instead of ``old``, at the same position."""
        pair = self._pairs.pop(old, None)
        if pair is not None:
            self._pairs[new] = new + pair[len(old):]


class MultiRender(Render):
    """Frames of one execution of a multi stream: wrapped data, the stream's cursor as id."""

    format = "multi"
    __slots__ = ("mux", "key", "execution_id")

    def __init__(self, mux: Mux, key: str, execution_id: str) -> None:
        self.mux = mux
        self.key = key
        self.execution_id = execution_id

    def frame(self, event: Event) -> bytes:
        return multi_frame(self.mux.cursor(self.key, event.id), self.execution_id, event)

    def batch(self, batch: Batch) -> bytes:
        return b"".join([self.frame(entry[3]) for entry in batch.events])

    def entry(self, entry: Entry) -> bytes:
        return self.frame(entry[3])

    def start(self, cursor: Cursor) -> None:
        """Put the execution's starting position into the cursor (before any frame)."""
        self.mux.cursor(self.key, cursor.last_sent)


class AllRenders(Render):
    """Flushes the render of every execution of a stream (HTML adds each one's state)."""

    def __init__(self, cursors: dict[str, Cursor]) -> None:
        self.cursors = cursors

    async def flush(self, out: list[bytes]) -> None:
        for cursor in list(self.cursors.values()):
            await cursor.render.flush(out)

    def close(self) -> None:
        for cursor in self.cursors.values():
            cursor.render.close()


__all__ = ["AllRenders", "FeedMux", "MultiRender", "Mux"]
