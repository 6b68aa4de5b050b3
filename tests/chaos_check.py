"""The chaos run's verdict: did every client get what the senders' records say was sent?

Pure functions, no I/O, so the rules can be unit-tested on hand-made sequences.

**Incarnations come from the sender's record.** Each execution has exactly one
sender, which records every send in order: the payload's sequence number ``q``,
and the id the send returned (or that it failed). Within one incarnation of the
execution's log the returned ids are consecutive, except that a failed send may
still have taken an id (Redis applied it, the reply was lost). So a new
incarnation starts where a returned id is not above the previous one (ids
restarted) or is more than ``1 + failed sends since`` above it (ids jumped to a
new base). Nothing here assumes how the app numbers a new incarnation.

**What a client must have.** Its received events, split at each ``stream-reset``
into segments, must read as follows:

- the first segment starts at the first event of the first incarnation (the
  clients connect before anything is sent); a segment after a reset starts at the
  first event of an incarnation later than the last event before the reset (the
  complete retained new log: the runs keep every event of the log);
- inside a segment, each event is the next recorded one: the same incarnation,
  the next confirmed send (sends that failed may or may not appear, but never
  twice or out of order); moving on to the next incarnation inside a segment is
  fine only when the previous one was complete;
- a segment that ends before its incarnation was complete must be followed by a
  reset (the tail was lost with the log: counted as ``tail_lost_with_log``, not an
  error); the last segment ends with everything of the last incarnation;
- the client ended (``stream-closed``, or a 204 once it had everything).

A reset that the client did not need (it had a position in the current log) is an
error too (``needless_reset``): it makes the browser redraw everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Optional

RESET = "stream-reset"
CLOSED = "stream-closed"


@dataclass(frozen=True)
class Sent:
    """One recorded send: sequence number, the id it returned (None: the send failed)."""

    q: int
    id: Optional[int]
    error: str = ""


@dataclass
class Incarnation:
    """One incarnation of an execution's log, as its sender saw it."""

    #: Every send in it, in order (failed ones included: they may have been logged).
    sends: list[Sent] = field(default_factory=list)

    @property
    def confirmed(self) -> list[Sent]:
        return [s for s in self.sends if s.id is not None]

    @property
    def ids(self) -> list[int]:
        return [s.id for s in self.sends if s.id is not None]


def incarnations(sends: Sequence[Sent]) -> list[Incarnation]:
    """Split one execution's record (in send order) into incarnations (see the module doc).

    Failed sends before the first confirmed one of a new incarnation stay with the
    incarnation they were made in: they belong to whichever log took them, which the
    record cannot tell, so the check accepts them on either side.
    """
    result = [Incarnation()]
    previous: Optional[int] = None
    failed_since = 0
    for sent in sends:
        if sent.id is None:
            failed_since += 1
            result[-1].sends.append(sent)
            continue
        if previous is not None and not previous < sent.id <= previous + 1 + failed_since:
            result.append(Incarnation())
        result[-1].sends.append(sent)
        previous, failed_since = sent.id, 0
    return result


@dataclass(frozen=True)
class Received:
    """One event a client received: its id (None for ``stream-reset``), name and ``q``."""

    id: Optional[int]
    event: str
    q: Optional[int] = None


@dataclass
class Counts:
    """Event counts, for one client (:class:`Verdict`) or summed over a run (:class:`Tally`)."""

    received: int = 0
    resets: int = 0
    #: Confirmed events the client never got and nothing excuses.
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    #: Confirmed events of an incarnation whose log was lost before the client read them
    #: (followed by a reset and the new log: allowed).
    tail_lost_with_log: int = 0
    needless_resets: int = 0


@dataclass
class Verdict(Counts):
    """What one client's events show."""

    #: Human-readable descriptions of every violation, with the ids around it.
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _locate(incs: Sequence[Incarnation]) -> dict[int, tuple[int, int]]:
    """q -> (incarnation index, index among that incarnation's sends)."""
    return {s.q: (k, i) for k, inc in enumerate(incs) for i, s in enumerate(inc.sends)}


def _confirmed_between(inc: Incarnation, start: int, stop: int) -> list[Sent]:
    """Confirmed sends of ``inc`` with index in [start, stop)."""
    return [s for s in inc.sends[max(start, 0):stop] if s.id is not None]


def check_client(events: Iterable[Received], incs: Sequence[Incarnation],
                 finished: bool) -> Verdict:
    """Judge one client's received events against its execution's incarnations."""
    verdict = Verdict()
    where = _locate(incs)
    position: Optional[tuple[int, int]] = None  # (incarnation, send index) of the last event
    segment_start = True
    after_reset = False
    history: list[str] = []  # short trail of what was received, for error messages

    def fail(message: str) -> None:
        verdict.errors.append(f"{message}; last received: {' '.join(history[-8:])}")

    def complete_from(k: int, index: int) -> list[Sent]:
        """Confirmed sends of incarnation k after send index ``index``."""
        return _confirmed_between(incs[k], index + 1, len(incs[k].sends))

    for event in events:
        if event.event == RESET:
            verdict.resets += 1
            history.append("RESET")
            segment_start, after_reset = True, True
            continue
        if event.event == CLOSED:
            history.append(f"closed:{event.id}")
            continue
        verdict.received += 1
        history.append(f"{event.id}")
        if event.q not in where:
            fail(f"event id {event.id} q={event.q} was never sent")
            continue
        k, index = where[event.q]
        sent = incs[k].sends[index]
        if sent.id is not None and sent.id != event.id:
            fail(f"q={event.q} arrived with id {event.id}, its send returned {sent.id}")
        if segment_start:
            segment_start = False
            skipped = _confirmed_between(incs[k], 0, index)
            if after_reset and position is not None:
                old_k, old_index = position
                if k <= old_k:
                    verdict.needless_resets += 1
                    fail(f"reset inside incarnation {k} (client had id "
                         f"{incs[old_k].sends[old_index].id}), restarted at id {event.id}")
                    if k == old_k and index <= old_index:
                        verdict.duplicated += old_index - index + 1
                else:
                    verdict.tail_lost_with_log += len(complete_from(old_k, old_index))
                    verdict.lost += sum(len(inc.confirmed) for inc in incs[old_k + 1:k])
            elif position is None and k > 0:
                verdict.lost += sum(len(inc.confirmed) for inc in incs[:k])
                fail(f"first event is id {event.id} of incarnation {k}")
            if skipped:
                verdict.lost += len(skipped)
                fail(f"segment starts at id {event.id}, {len(skipped)} earlier events of "
                     f"incarnation {k} missing (first missing id {skipped[0].id})")
            position = (k, index)
            continue
        assert position is not None
        old_k, old_index = position
        if (k, index) <= (old_k, old_index):
            if (k, index) == (old_k, old_index):
                verdict.duplicated += 1
                fail(f"id {event.id} (q={event.q}) repeated")
            else:
                verdict.out_of_order += 1
                fail(f"id {event.id} (incarnation {k}) after id "
                     f"{incs[old_k].sends[old_index].id} (incarnation {old_k})")
            continue
        if k == old_k:
            missing = _confirmed_between(incs[k], old_index + 1, index)
        else:
            missing = complete_from(old_k, old_index)
            missing += [s for inc in incs[old_k + 1:k] for s in inc.confirmed]
            missing += _confirmed_between(incs[k], 0, index)
        if missing:
            verdict.lost += len(missing)
            fail(f"after id {incs[old_k].sends[old_index].id} came id {event.id}: "
                 f"{len(missing)} missing ({', '.join(str(s.id) for s in missing[:6])}"
                 f"{' …' if len(missing) > 6 else ''})")
        position = (k, index)

    last_k = len(incs) - 1
    if position is None:
        missing = sum(len(inc.confirmed) for inc in incs)
        if missing:
            verdict.lost += missing
            fail(f"received none of {missing} events")
    else:
        old_k, old_index = position
        missing = complete_from(old_k, old_index)
        missing += [s for inc in incs[old_k + 1:] for s in inc.confirmed]
        if missing:
            verdict.lost += len(missing)
            fail(f"ended after id {incs[old_k].sends[old_index].id} (incarnation {old_k} of "
                 f"{last_k}): {len(missing)} never received "
                 f"({', '.join(str(s.id) for s in missing[:6])}{' …' if len(missing) > 6 else ''})")
    if not finished:
        fail("the stream never ended (no stream-closed, no 204)")
    return verdict


@dataclass
class Tally(Counts):
    """The whole run's figures."""

    clients: int = 0
    failed_clients: int = 0

    def add(self, verdict: Verdict) -> None:
        self.clients += 1
        self.failed_clients += not verdict.ok
        for counter in fields(Counts):
            setattr(self, counter.name, getattr(self, counter.name) + getattr(verdict, counter.name))


__all__ = ["CLOSED", "RESET", "Counts", "Incarnation", "Received", "Sent", "Tally", "Verdict",
           "check_client", "incarnations"]
