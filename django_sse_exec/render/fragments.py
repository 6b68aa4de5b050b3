"""The encoded HTML fragments of events an event loop keeps, bounded in bytes.

The loop's :class:`~django_sse_exec.render.html.FragmentCache` renders each
event once and keeps its fragment for the other streams of the execution.
What it keeps must not grow with what executions send: one execution's
history alone may be ``HISTORY_MAX_BYTES`` (16 MiB) of events, and a process
streams many. So every fragment kept counts against one budget for the loop
(:func:`budget`: :data:`CACHE_BYTES`, lowered by ``HISTORY_MAX_BYTES``), the
oldest go first whatever execution they belong to (a stream that needs one
again renders it again), and an execution keeps ``HISTORY_MAX_EVENTS`` at
most. Its owner frees an execution's fragments (:meth:`FragmentStore.clear`) when
the execution's last stream ends.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from ..conf import sse_settings
from ..wire import Event

#: Bytes of event fragments one event loop keeps across all executions, at most
#: (each counted with its event and :data:`FRAGMENT_OVERHEAD`).
CACHE_BYTES = 16 * 1024 * 1024
#: What keeping one fragment costs besides its bytes (tuple, dict slot, ids), counted.
FRAGMENT_OVERHEAD = 200


def budget() -> int:
    """The budget of a loop's fragments: :data:`CACHE_BYTES`, or ``HISTORY_MAX_BYTES`` if lower."""
    return min(CACHE_BYTES, int(sse_settings.HISTORY_MAX_BYTES))


def size_of(event: Event, encoded: bytes) -> int:
    """What keeping ``event`` and its fragment counts against the budget."""
    return len(encoded) + len(event.data) + len(event.event) + FRAGMENT_OVERHEAD


class Fragments:
    """One execution's kept fragments: id -> (the event, its encoded fragment), oldest first."""

    __slots__ = ("items", "bytes")

    def __init__(self) -> None:
        self.items: OrderedDict[int, tuple[Event, bytes]] = OrderedDict()
        #: What they count against the budget.
        self.bytes = 0

    def get(self, event_id: int) -> tuple[Event, bytes] | None:
        return self.items.get(event_id)


class FragmentStore:
    """Every execution's :class:`Fragments` of one event loop, under one byte budget."""

    def __init__(self) -> None:
        #: Every fragment kept, oldest first, as (its execution's fragments, its id):
        #: the order they go in past the budget (those gone another way are skipped).
        self._order: deque[tuple[Fragments, int]] = deque()
        #: Fragments kept, and what they count against :func:`budget`.
        self.count = 0
        self.bytes = 0

    def put(self, fragments: Fragments, event: Event, encoded: bytes) -> None:
        """Keep ``event``'s fragment, then drop the oldest ones past the limits."""
        fragments.items[event.id] = (event, encoded)
        self._count(fragments, size_of(event, encoded))
        self._order.append((fragments, event.id))
        limit = max(1, int(sse_settings.HISTORY_MAX_EVENTS))
        while len(fragments.items) > limit:
            self._count(fragments, -size_of(*fragments.items.popitem(last=False)[1]))
        self._trim()

    def clear(self, fragments: Fragments) -> None:
        """Drop all of one execution's fragments."""
        self.count -= len(fragments.items)
        self.bytes -= fragments.bytes
        fragments.items.clear()
        fragments.bytes = 0

    def _count(self, fragments: Fragments, size: int) -> None:
        """Count one fragment more (``size`` > 0) or less (< 0)."""
        fragments.bytes += size
        self.bytes += size
        self.count += 1 if size > 0 else -1

    def _trim(self) -> None:
        limit = budget()
        order = self._order
        while self.bytes > limit and order:
            fragments, event_id = order.popleft()
            kept = fragments.items.pop(event_id, None)
            if kept is not None:
                self._count(fragments, -size_of(*kept))
        if len(order) > 2 * self.count + 64:  # mostly fragments gone another way
            self._order = deque((f, event_id) for f, event_id in order if event_id in f.items)


__all__ = ["CACHE_BYTES", "FRAGMENT_OVERHEAD", "FragmentStore", "Fragments", "budget", "size_of"]
