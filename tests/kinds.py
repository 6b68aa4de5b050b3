"""What a client of each kind of stream makes of its events, and the rules it holds them to.

The kind contract (``tests/test_kind_contract.py``) and the bounds of each kind
(``tests/test_kind_bounds.py``) open one execution's stream, a set's or a feed's
(:class:`Kind`, :class:`Subject`) in JSON or HTML, and read each event as what it
says about one execution (:meth:`Subject.records`): an event's id, a state
fragment's last id, an announcement, a removal, a reset. :class:`Model` is what
the server holds; :class:`Tracker` is what the client has, and it checks every
record against the contract as it arrives: each id once and in order, each state
later than the last, one announcement per followed execution.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.server import Server
from tests.sse import SSEEvent, SSEParser

#: Seconds a connection may go without a byte while the client waits for more.
QUIET = 15


@dataclass(frozen=True)
class Kind:
    """One kind of stream in one format."""

    name: str  # "single", "set" or "feed"
    format: str = "json"

    def __str__(self) -> str:
        return f"{self.name}-{self.format}"

    @property
    def feed(self) -> bool:
        return self.name == "feed"


KINDS = [Kind("single"), Kind("single", "html"), Kind("set"), Kind("set", "html"), Kind("feed")]
STATE_ID = re.compile(r'data-last-event-id="(\d+)"')


@dataclass
class Subject:
    """What one stream is of: its executions (and feed), and the URL that opens it."""

    kind: Kind
    ids: list[str]
    feed: str
    url: str

    @classmethod
    def make(cls, srv: Server, kind: Kind, size: int) -> "Subject":
        from django.conf import settings as django_settings
        from django.test import override_settings

        from django_sse_exec import feed_stream_url, multi_stream_url, stream_url

        base = f"k{uuid.uuid4().hex[:10]}"
        ids = [f"{base}-{i}" for i in range(size)]
        feed = f"user:{base}"
        if kind.name == "single":
            url = stream_url(ids[0], format=kind.format)
        elif kind.name == "set":  # (a token for as many as the server allows)
            wide = {**django_settings.SSE_EXEC, "MULTI_STREAM_MAX": max(size, 100)}
            with override_settings(SSE_EXEC=wide):
                url = multi_stream_url(ids) + ("&format=html" if kind.format == "html" else "")
        else:
            url = feed_stream_url(feed)
        return cls(kind, ids, feed, srv.base_url + url)

    def records(self, event: SSEEvent) -> list[tuple[Any, ...]]:
        """What ``event`` says, per execution: ``("event", id, n)``, ``("state", id, n)``,
        ``("added", id)``, ``("removed", id)``, ``("reset", id or the feed)``, ``("end",)``."""
        kind, name = self.kind, event.event
        if kind.name == "single":
            execution_id = self.ids[0]
            if name == "stream-reset":
                return [("reset", execution_id)]
            if kind.format == "html" and name == "message":
                return [("state", execution_id, state_id(event))]
            return [("event", execution_id, int(event.id or 0))]
        if kind.format == "html":
            if name.startswith("state:"):
                return [("state", name[len("state:"):], state_id(event))]
            return [("end",) if name == "stream-closed" else ("other", name)]
        body = event.json
        if name == "execution-added":
            assert body == {"executionId": body["executionId"], "feed": self.feed}, body
            return [("added", body["executionId"])]
        if name == "execution-removed":
            return [("removed", body["executionId"])]
        if name == "stream-reset":
            return [("reset", body.get("executionId") or body.get("feed"))]
        return [("event", body["executionId"], body["id"])]


def state_id(event: SSEEvent) -> int:
    match = STATE_ID.search(event.data)
    assert match, f"a state fragment without its last event id: {event.data[:200]!r}"
    return int(match[1])


@dataclass
class Model:
    """What the server holds: each execution's last id, and the feed's entries."""

    kind: Kind
    ids: list[str]
    window: int
    last: dict[str, int] = field(default_factory=dict)
    entries: list[str] = field(default_factory=list)

    def apply(self, ops: list[list[Any]], results: list[int]) -> None:
        for op, result in zip(ops, results):
            if op[0] == "add":
                self.entries.append(op[2])
            else:
                self.last[op[1]] = result

    def followed(self) -> set[str]:
        """A feed stream's executions: those of the feed's last ``window`` entries."""
        return set(self.entries[-self.window:])

    def expected(self) -> dict[str, int]:
        """The last id the client must have of each execution it is given."""
        if self.kind.feed:
            return {e: self.last.get(e, 0) for e in self.followed()}
        return {e: n for e, n in self.last.items() if n}


@dataclass
class Tracker:
    """What the client has of each execution, checked against the contract as it arrives:
    the last event id and the last state fragment's of each."""

    kind: Kind
    last: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    announced: set[str] = field(default_factory=set)
    ended: bool = False

    def copy(self) -> "Tracker":
        return Tracker(self.kind, dict(self.last), dict(self.states), set(self.announced),
                       self.ended)

    def take(self, record: tuple[Any, ...]) -> None:
        tag = record[0]
        assert tag not in ("reset", "other"), f"unexpected {record} (no history was trimmed)"
        assert not self.ended, f"{record} after the stream's end"
        if tag == "end":
            self.ended = True
            return
        execution_id = record[1]
        if tag == "added":
            assert execution_id not in self.announced, f"{execution_id} announced twice"
            self.announced.add(execution_id)
            self.last[execution_id] = 0  # a new announcement replays from the start
        elif tag == "removed":
            assert execution_id in self.announced, f"{execution_id} removed, never announced"
            self.announced.discard(execution_id)
        elif tag == "event":
            if self.kind.feed:
                assert execution_id in self.announced, f"an event of {execution_id}, not announced"
            before, now = self.last.get(execution_id, 0), record[2]
            assert now == before + 1, f"{execution_id}: id {now} after {before}"
            self.last[execution_id] = now
        else:
            before, now = self.states.get(execution_id, 0), record[2]
            assert now > before, f"{execution_id}: a state at {now} after one at {before}"
            self.states[execution_id] = now

    def caught_up(self, model: Model) -> bool:
        expected = model.expected()
        if self.kind.feed and not set(expected) <= self.announced:
            return False
        have = self.states if self.kind == Kind("set", "html") else self.last
        return all(have.get(e, 0) == n for e, n in expected.items())

    def check_final(self, model: Model) -> None:
        assert self.caught_up(model), (model.expected(), self.last, self.states)
        if self.kind.feed:
            assert self.announced == model.followed(), "the feed follows other executions"
        elif self.kind.format == "html":
            assert self.states == model.expected(), "the last state is not the last event's"
            if self.kind.name == "set":
                assert self.ended, "the set's own stream-closed is missing"


async def read_stream(http: httpx.AsyncClient, url: str, cursor: str | None,
                      done: Callable[[list[SSEEvent]], bool]) -> tuple[list[SSEEvent], str | None, int]:
    """Connect resuming at ``cursor``; read until ``done(events)``: the events, the
    cursor the client keeps, and the bytes read."""
    headers = {"Last-Event-ID": cursor} if cursor else {}
    events: list[SSEEvent] = []
    parser, size = SSEParser(last_event_id=cursor), 0
    async with http.stream("GET", url, headers=headers) as resp:
        assert resp.status_code == 200, resp.status_code
        chunks = resp.aiter_raw()  # (kept: a dropped iterator closes the stream)
        while not done(events):
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), QUIET)
            except asyncio.TimeoutError:
                raise AssertionError(f"nothing for {QUIET}s; have {events[-5:]}") from None
            size += len(chunk)
            events.extend(parser.feed(chunk))
    return events, parser.last_event_id, size


async def read_records(http: httpx.AsyncClient, subject: Subject, cursor: str | None,
                       until: Callable[[list[tuple[Any, ...]]], bool]) -> tuple[list[Any], str | None]:
    """Connect resuming at ``cursor``; read until ``until(records)``; the records and the cursor."""
    def records(events: list[SSEEvent]) -> list[tuple[Any, ...]]:
        return [record for event in events for record in subject.records(event)]

    events, cursor, _ = await read_stream(http, subject.url, cursor,
                                          lambda events: until(records(events)))
    return records(events), cursor


def has(*wanted: tuple[Any, ...]) -> Callable[[list[tuple[Any, ...]]], bool]:
    """A condition: every record of ``wanted`` was read."""
    return lambda records: all(w in records for w in wanted)


def resets(records: list[tuple[Any, ...]]) -> list[Any]:
    return [r[1] for r in records if r[0] == "reset"]


__all__ = ["KINDS", "QUIET", "Kind", "Model", "Subject", "Tracker", "has", "read_records",
           "read_stream", "resets", "state_id"]
