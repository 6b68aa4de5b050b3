"""How a stream turns events into bytes: the JSON frames everyone shares, or HTML fragments.

A stream URL may ask for a representation with ``?format=``: ``json`` (the
default: each event's data is its JSON text) or ``html`` (each event's data is
an HTML fragment, followed by a fragment of the whole execution state; see
:mod:`django_sse_exec.render.html`; which one a request asks for is
:mod:`.select`'s rule). The format is a separate, validated query
parameter rather than part of the signed token: it does not widen what a token
grants (the fragments are rendered from the very events the JSON carries), so a
token minted for one format serves the other.

The stream asks its :class:`Render` for every byte that carries an event, so a
format is one object, chosen once per connection.
"""

from __future__ import annotations

from ..hub.subscriber import Batch, Entry
from ..wire import Event, frame, reset_frame


class Render:
    """The JSON representation: frames built once per event and shared by every stream."""

    format = "json"
    __slots__ = ()  # a stream of many executions holds one render per execution

    def frame(self, event: Event) -> bytes:
        """The bytes of a logged event (replay, gap repair)."""
        return frame(event)

    def batch(self, batch: Batch) -> bytes:
        """The bytes of a whole batch the hub pushed (its JSON frames are already joined)."""
        return batch.data

    def entry(self, entry: Entry) -> bytes:
        """The bytes of one event of a batch (its JSON frame is already built)."""
        return entry[2]

    def reset(self, execution_id: str, requested: int, first_retained: int) -> bytes:
        """The ``stream-reset`` event."""
        return reset_frame(execution_id, requested, first_retained)

    async def flush(self, out: list[bytes]) -> None:
        """Called with a chunk's frames before it is written (HTML adds the state there)."""

    def close(self) -> None:
        """The stream ended."""


#: The JSON render is stateless: one for every stream.
JSON = Render()


__all__ = ["JSON", "Render"]
