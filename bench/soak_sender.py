"""One sender process of the soak run: executions that start, report at 1 event/s and end.

Run by :mod:`bench.soak` as ``python -m bench.soak_sender RECORD STOP --name s0 --slots 50``
with ``DJANGO_SETTINGS_MODULE=tests.settings`` and the run's Redis environment. It
plays a Celery worker pool: ``--slots`` executions run at once, each sending one
event per second with the sync ``send_sse_event`` (the slots' sends spread evenly
over each second), and each ends after a random number of events (``--events
MIN-MAX``) with ``close_sse_connections``; its slot then starts the next execution.
The first execution of each slot starts at a random moment of the first minute,
so starts and ends are spread out from then on.

A send that raises ``StoreUnavailable`` (Redis down) is recorded as failed and the
execution sends its next event a second later, as a task retrying would: every
execution still gets its number of confirmed events. A close that raises is tried
again every second. When the file ``STOP`` exists the process closes every running
execution (retrying while Redis is down) and exits.

Every line of ``RECORD`` is JSON, flushed at once, in the format of
:mod:`tests.chaos_sender` (so :mod:`tests.chaos_check` can judge the clients):
``{"start": execution}`` before its first send, ``{"e", "q", "id", "t"}`` after each
send returned (``"id": null`` and the error when it raised), ``{"e", "closed": id}``
once it is closed.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from dataclasses import dataclass
from typing import IO

from tests.chaos_sender import record

PAD = "x" * 64  # as in bench.senders: a realistic progress event is ~100 bytes of JSON


@dataclass
class Slot:
    """One worker slot: the execution it runs now (if any) and how far it is."""

    index: int
    starts_at: float
    generation: int = 0
    execution: str = ""
    target: int = 0
    sent: int = 0
    closing: bool = False


class Pool:
    """The slots of one sender process and its record."""

    def __init__(self, out: IO[str], name: str, slots: int, events: tuple[int, int],
                 rng: random.Random) -> None:
        self.out, self.name, self.events, self.rng = out, name, events, rng
        now = time.monotonic()
        self.slots = [Slot(i, now + rng.uniform(0, 60)) for i in range(slots)]
        self.q = 0

    def tick(self, slot: Slot) -> None:
        """This slot's turn of the second: close, start, or send its execution's next event."""
        if slot.closing:
            self.close(slot)
            return
        if not slot.execution:
            if time.monotonic() < slot.starts_at:
                return
            slot.generation += 1
            slot.execution = f"soak-{self.name}-{slot.index}-{slot.generation}"
            slot.target, slot.sent = self.rng.randint(*self.events), 0
            record(self.out, start=slot.execution)
        if self.send(slot.execution):
            slot.sent += 1
            if slot.sent >= slot.target:
                slot.closing = True
                self.close(slot)

    def send(self, execution: str) -> bool:
        """One event; recorded with the id it got, or as failed. True if it was confirmed."""
        from django_sse_exec import StoreUnavailable, send_sse_event

        q, self.q = self.q, self.q + 1
        started = time.time()
        try:
            event_id = send_sse_event(execution, "tick", {"q": q, "t": round(started, 3), "pad": PAD})
        except StoreUnavailable as exc:
            record(self.out, e=execution, q=q, id=None, error=repr(exc)[:200], t=round(started, 3))
            return False
        except Exception as exc:  # anything else is a bug: the report lists it
            record(self.out, e=execution, q=q, id=None, error=repr(exc)[:200], unexpected=True,
                   t=round(started, 3))
            return False
        record(self.out, e=execution, q=q, id=event_id, t=round(started, 3))
        return True

    def close(self, slot: Slot) -> bool:
        """Close the slot's execution (the slot is free afterwards); False while Redis is down."""
        from django_sse_exec import StoreUnavailable, close_sse_connections

        try:
            closed = close_sse_connections(slot.execution)
        except StoreUnavailable:
            return False
        record(self.out, e=slot.execution, closed=closed)
        slot.execution, slot.closing = "", False
        return True

    def close_all(self, deadline: float) -> None:
        """Close every running execution, retrying while Redis is down (until ``deadline``)."""
        for slot in self.slots:
            while slot.execution and not self.close(slot) and time.monotonic() < deadline:
                time.sleep(0.2)


def parse_range(text: str) -> tuple[int, int]:
    """``"30-120"`` → (30, 120); ``"2"`` → (2, 2)."""
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("record")
    parser.add_argument("stop")
    parser.add_argument("--name", required=True, help="part of every execution id")
    parser.add_argument("--slots", type=int, default=50, help="executions running at once")
    parser.add_argument("--events", default="30-120", help="events per execution, MIN-MAX")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import django

    django.setup()
    with open(args.record, "a", encoding="utf-8") as out:
        pool = Pool(out, args.name, args.slots, parse_range(args.events),
                    random.Random(args.seed))
        record(out, pid=os.getpid(), started=time.time())
        step = 1.0 / max(len(pool.slots), 1)
        next_second = time.monotonic()
        while not os.path.exists(args.stop):
            for slot in pool.slots:
                delay = next_second + slot.index * step - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.tick(slot)
            next_second = max(next_second + 1.0, time.monotonic())
        pool.close_all(time.monotonic() + 60)
        record(out, done=time.time())


if __name__ == "__main__":
    main()
