"""One contract for every kind of stream: one execution's, a fixed set's and a feed's.

The single stream promises every event once and in order, whatever the client
sends; streams of many executions promise the same per execution. Each property
here runs on every kind, through both entry points (the view and the ASGI fast
path: ``tests/conftest.py`` runs the module twice) and in each format the kind
serves (JSON everywhere; HTML for one execution and a set), through real daphne:

* **exact resume from any cut** (Hypothesis, model-based): sets and feeds of 1
  to 300 executions, events before the first connect, connections cut at a
  random byte after a random number of events, random live additions while
  connected (events; executions joining a feed, again or anew), then every
  execution closed. Per execution the client gets every id once and in order
  across its reconnects with the last ``id:`` it received, and each state
  fragment is later than the one before; a feed announces an execution once
  while it follows it, follows the executions of its last ``MULTI_STREAM_MAX``
  entries (:mod:`django_sse_exec.streams.many.feeds`) and says
  ``execution-removed`` when one leaves;
* **``stream-reset`` exactly where history is gone**: a reconnect whose position
  is still retained gets none, one whose position was trimmed away gets one,
  for that execution only (or for the feed, when the feed's own entries are gone);
* **malformed input** (ids, cursors, tokens, formats, ``Last-Event-ID``
  garbage, huge values) is answered 4xx, or 200 with a full replay, never 5xx.

Bounded server memory with stalled readers, and the bounds of each kind's cost,
are in ``tests/test_kind_bounds.py``. In CI the examples are derandomized (the
same every run); ``HYPOTHESIS_EXAMPLES`` sets how many each kind runs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import entry_point_env
from tests.http1 import ChunkedDecoder, open_socket, parse_head, request_bytes
from tests.kinds import KINDS, QUIET, Kind, Model, Subject, Tracker, has, read_records, resets
from tests.server import Server
from tests.sse import SSEEvent, SSEParser

#: The feed property's server follows this many entries of a feed: small, so that
#: executions leave the window all the time.
FEED_WINDOW = 12
#: The largest set of the property (the set server's ``MULTI_STREAM_MAX``).
SET_MAX = 300
#: History of the server of the reset tests.
TRIMMED_HISTORY = 6
SERVERS = {
    "plain": {"KEEPALIVE": 30},
    "wide": {"KEEPALIVE": 30, "MULTI_STREAM_MAX": SET_MAX},
    "narrow": {"KEEPALIVE": 30, "MULTI_STREAM_MAX": FEED_WINDOW},
    "trimmed": {"KEEPALIVE": 30, "HISTORY_MAX_EVENTS": TRIMMED_HISTORY},
}

PROPERTY = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "4")),
    derandomize=os.environ.get("CI") == "true",
    deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example])


@pytest.fixture(scope="module")
def servers(entry_point: str) -> Iterator[Callable[[str], Server]]:
    """``servers(name)``: the daphne of ``SERVERS[name]`` for this entry point, started once."""
    started: dict[str, Server] = {}

    def get(name: str) -> Server:
        if name not in started:
            started[name] = Server("daphne", env=entry_point_env(entry_point),
                                   sse_exec=SERVERS[name]).start()
        return started[name]

    yield get
    for srv in started.values():
        srv.stop()


# -- one client, connecting again and again ------------------------------------------

@dataclass(frozen=True)
class Round:
    """One connection: live additions, then read ``budget`` records and die at ``cut``."""

    budget: int
    cut: float
    query: bool = False
    ops: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True)
class Plan:
    size: int
    before: tuple[int, ...]
    joined: int = 0
    rounds: tuple[Round, ...] = (Round(1000, 1.0),)


@st.composite
def plans(draw: Any, kind: Kind) -> Plan:
    if kind.name == "single":
        size = 1
    else:
        size = draw(st.one_of(st.integers(1, 16), st.integers(1, SET_MAX)))
    verbs = ["send", "add"] if kind.feed else ["send"]
    ops = st.tuples(st.sampled_from(verbs), st.integers(0, size - 1), st.integers(1, 3))
    rounds = st.builds(Round, budget=st.integers(1, 60), cut=st.floats(0, 1),
                       query=st.booleans(), ops=st.lists(ops, max_size=12).map(tuple))
    return Plan(size=size,
                before=tuple(draw(st.lists(st.integers(0, 3), min_size=size, max_size=size))),
                joined=draw(st.integers(0, size)) if kind.feed else 0,
                rounds=tuple(draw(st.lists(rounds, min_size=1, max_size=4))))


def operations(subject: Subject, verb: str, index: int, count: int) -> list[list[Any]]:
    execution_id = subject.ids[index]
    if verb == "add":
        return [["add", subject.feed, execution_id]]
    return [["send", execution_id, "step", {"n": n}] for n in range(count)]


async def run(srv: Server, kind: Kind, plan: Plan, window: int) -> None:
    """Play ``plan`` against ``srv`` and check every rule of the contract on the way."""
    subject = Subject.make(srv, kind, plan.size)
    model = Model(kind, subject.ids, window)
    tracker = Tracker(kind)
    ops = [op for i, n in enumerate(plan.before) for op in operations(subject, "send", i, n)]
    ops += [["add", subject.feed, e] for e in subject.ids[:plan.joined]]
    cursor: str | None = None
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as http:
        model.apply(ops, await srv.script(ops, http))
        for round_ in plan.rounds:
            live = [op for verb, index, count in round_.ops
                    for op in operations(subject, verb, index, count)]
            cursor, _ = await connection(http, srv, subject, model, tracker, cursor, round_, live)
        closing = [["close", e] for e in subject.ids]
        cursor, status = await connection(http, srv, subject, model, tracker, cursor,
                                          Round(0, 1.0), closing, final=True)
        tracker.check_final(model)
        if not kind.feed:  # everything closed and seen: nothing more to say
            resp = await http.get(subject.url, headers={"Last-Event-ID": cursor or ""})
            assert resp.status_code == 204, (resp.status_code, resp.text[:300])


async def connection(http: httpx.AsyncClient, srv: Server, subject: Subject, model: Model,
                     tracker: Tracker, cursor: str | None, round_: Round, live: list[list[Any]],
                     final: bool = False) -> tuple[str | None, int]:
    """One connection resuming at ``cursor``: apply ``live`` once connected, read until
    the client has everything (or ``round_.budget`` records), then die at ``round_.cut``
    of the bytes read. Returns the cursor the client keeps and the status."""
    url, headers = subject.url, {}
    if cursor and round_.query:
        url += "&last_event_id=" + quote(cursor, safe="")
    elif cursor:
        headers["Last-Event-ID"] = cursor
    async with http.stream("GET", url, headers=headers) as resp:
        assert resp.status_code == 200, (resp.status_code, (await resp.aread())[:300])
        if live:
            model.apply(live, await srv.script(live, http))
        seen, parser = tracker.copy(), SSEParser(last_event_id=cursor)
        raw, count, chunks = b"", 0, resp.aiter_raw()
        must_end = final and not subject.kind.feed  # sets and single streams end by themselves
        while True:
            if not must_end and (seen.caught_up(model) or (not final and count >= round_.budget)):
                break
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), QUIET)
            except StopAsyncIteration:
                assert must_end or not final, "the stream ended before the client had everything"
                break
            except asyncio.TimeoutError:
                raise AssertionError(f"{subject.kind}: nothing for {QUIET}s; expected "
                                     f"{model.expected()}, have {seen.last}") from None
            raw += chunk
            for event in parser.feed(chunk):
                check_cursor(subject, event)
                for record in subject.records(event):
                    seen.take(record)
                    count += 1
    kept = raw if final else raw[:int(len(raw) * round_.cut)]
    parser = SSEParser(last_event_id=cursor)
    for event in parser.feed(kept):
        for record in subject.records(event):
            tracker.take(record)
    return parser.last_event_id, resp.status_code


def check_cursor(subject: Subject, event: SSEEvent) -> None:
    """A feed's cursor stays short whatever the feed's length: at most its window's pairs."""
    if subject.kind.feed and event.id:
        assert len(event.id) <= 30 * (FEED_WINDOW + 1), f"a {len(event.id)}-character cursor"


def window_of(kind: Kind) -> tuple[str, int]:
    return ("narrow", FEED_WINDOW) if kind.feed else ("wide", SET_MAX)


#: A feed of 20 executions: the 15th entry's key was the feed's own ("f" both), so a
#: reconnect after its events resumed it at the feed's position (the first catch).
COLLISION = Plan(size=20, before=tuple([0] * 14 + [3] + [1] * 5), joined=20, rounds=(
    Round(1000, 1.0, ops=(("send", 14, 3),)),
    Round(1000, 1.0, ops=(("send", 14, 3), ("send", 18, 1))),
    Round(3, 0.8, query=True, ops=(("send", 14, 2),))))
#: The largest: every execution with history, cut early, additions live.
LARGEST = Plan(size=SET_MAX, before=tuple([1, 2, 0] * (SET_MAX // 3)), joined=SET_MAX // 2,
               rounds=(Round(40, 0.6, ops=(("send", 0, 2), ("add", SET_MAX - 1, 1),
                                           ("send", SET_MAX - 1, 1))),
                       Round(5, 0.3, query=True, ops=(("add", 3, 1), ("send", 3, 2)))))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_every_event_once_and_in_order_from_any_cut(servers, kind):
    name, window = window_of(kind)
    srv = servers(name)

    @PROPERTY
    @given(plan=plans(kind))
    @example(plan=COLLISION if kind.name != "single" else Plan(1, (3,)))
    @example(plan=LARGEST if kind.name != "single" else Plan(1, (0,), rounds=(
        Round(1, 0.5, ops=(("send", 0, 3),)), Round(2, 0.9, True, (("send", 0, 1),)))))
    def check(plan: Plan) -> None:
        asyncio.run(run(srv, kind, plan, window))

    check()


# -- stream-reset exactly where history is gone ---------------------------------------

@pytest.mark.parametrize("kind", KINDS, ids=str)
async def test_stream_reset_exactly_where_history_is_gone(servers, kind):
    srv = servers("trimmed")
    subject = Subject.make(srv, kind, 1 if kind.name == "single" else 3)
    first = subject.ids[0]
    tag = "state" if kind == Kind("set", "html") else "event"
    ops = [["add", subject.feed, e] for e in subject.ids] if kind.feed else []
    ops += [op for i in range(len(subject.ids)) for op in operations(subject, "send", i, 2)]
    await srv.script(ops)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as http:
        records, cursor = await read_records(http, subject, None, has(
            *((tag, e, 2) for e in subject.ids)))
        assert not resets(records)
        # Still retained past the client's position: resumed, no reset.
        await srv.script(operations(subject, "send", 0, 3))  # ids 3..5 of 6 kept
        records, cursor = await read_records(http, subject, cursor, has((tag, first, 5)))
        assert not resets(records), records
        assert [r[2] for r in records if r[:2] == ("event", first)] == ([3, 4, 5] if tag == "event" else [])
        # Trimmed past it: a reset for that execution only, then what is retained.
        await srv.script(operations(subject, "send", 0, 10))  # ids 6..15, 10..15 kept
        records, cursor = await read_records(http, subject, cursor, has((tag, first, 15)))
        if kind == Kind("set", "html"):  # its state is rebuilt from what is retained
            assert not resets(records) and ("state", first, 15) in records
        else:
            assert resets(records) == [first], records
            assert records.index(("reset", first)) < records.index(("event", first, 10))
            assert [r[2] for r in records if r[:2] == ("event", first)] == list(range(10, 16))
        assert {r[1] for r in records if r[0] in ("event", "state")} == {first}
        if not kind.feed:
            return
        # The feed's own entries trimmed past the client's position: the feed is reset
        # and starts over with the executions of what it retains.
        more = [f"{subject.feed[5:]}-m{i}" for i in range(TRIMMED_HISTORY)]
        await srv.script([["add", subject.feed, e] for e in more])
        records, cursor = await read_records(http, subject, cursor, has(
            *(("added", e) for e in more)))
        assert records[0] == ("reset", subject.feed), records
        assert [r[1] for r in records if r[0] == "added"] == more


# -- malformed input: 4xx, or 200 and a full replay (or an exact resume), never 5xx --------

#: Positions no client of this app sends (``Last-Event-ID`` header and ``?last_event_id=``).
GARBAGE_POSITIONS = [
    " ", "-1", "0", "007", "1e3", "9" * 40, "abc", "\x7f", "1\x00", "0-1", "0-1.0-2", "f-5",
    "0-2s.3-k.f-5", "0-zzzzzzzzzzzzz", "~", "0~", "~0-1", "0~0-1", "1~1-1.1-2", "1~1-0",
    "zzzzzzzzzzzzz~1-1", "1~z-1", "0~0-1~1-1", "1" * 9000, "0~" + ".".join(f"{i:x}-1" for i in range(2000)),
    "１２", "é~é-1",
]


def garbage_requests(subject: Subject) -> Iterator[tuple[str, bytes | None]]:
    """``(url, Last-Event-ID)`` of each malformed request for ``subject``'s kind."""
    from django_sse_exec.auth.policies import make_token

    kind, url = subject.kind, subject.url
    base, _, query = url.partition("?")
    token = query.split("token=")[1].split("&")[0]
    for position in GARBAGE_POSITIONS:
        yield url, position.encode()
        yield url + "&last_event_id=" + quote(position, safe=""), None
    for bad in ("", "x", "x" * 5000, make_token("other"), "%00", token[:-3]):
        yield base + "?" + query.replace(token, bad), None
    yield base + "?" + query.replace("token=", "token=x&token="), None
    for bad in ("xml", "", "JSON", "html&format=html", "h" * 5000, "%00", "html" if kind.feed else "json"):
        yield url + "&format=" + bad, None
    yield url + "&" + "&".join(f"a{i}=1" for i in range(1200)), None  # too many fields
    root = base[:base.index("/sse/") + 5]
    if kind.name == "single":
        for bad in ("%00", "a" * 65, "-a", "%F0%9F%98%80", "a%2Fb", "..", "a%0Ab"):
            yield f"{root}executions/{bad}/events?{query}", None
    elif kind.name == "set":
        for bad in ("", ",", "a,,b", ",".join(f"e{i}" for i in range(SET_MAX + 1)), "a,a", "%00",
                    "%C3%A9", "a" * 65, ",".join(subject.ids + subject.ids[:1])):
            yield f"{root}executions/events?ids={bad}&token={token}", None
    else:
        for bad in ("bad%20name", "x" * 41, "%00", "_f", ":", "a%0Ab"):
            yield f"{root}feeds/{bad}/events?token={token}", None


async def raw_get(url: str, last_event_id: bytes | None) -> tuple[int, Any, Any]:
    """A GET over a raw socket (any header bytes, as a hostile client sends them):
    the status, the reader and the writer (the head read)."""
    request = request_bytes(url)
    if last_event_id is not None:
        request = request[:-2] + b"Last-Event-ID: " + last_event_id + b"\r\n\r\n"
    reader, writer = await open_socket(url)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), QUIET)
    return parse_head(head)[0], reader, writer


@pytest.mark.parametrize("kind", KINDS, ids=str)
async def test_malformed_input_is_a_4xx_or_a_full_replay_never_a_5xx(servers, kind):
    srv = servers("wide")
    subject = Subject.make(srv, kind, 1 if kind.name == "single" else 2)
    ops = [["add", subject.feed, e] for e in subject.ids] if kind.feed else []
    ops += [op for i in range(len(subject.ids)) for op in operations(subject, "send", i, 2)]
    await srv.script(ops)
    complete = has(*(("state" if kind == Kind("set", "html") else "event", e, 2) for e in subject.ids))
    answered: dict[int, int] = {}
    for url, position in garbage_requests(subject):
        status, reader, writer = await raw_get(url, position)
        try:
            answered[status] = answered.get(status, 0) + 1
            assert status < 500, (url[:200], position and position[:100], status)
            assert status in (200, 400, 403, 404, 413, 414, 431), (url[:200], position, status)
            if status != 200:
                continue
            # A full replay, or an exact resume: each execution up to its last id.
            records: list[tuple[Any, ...]] = []
            parser, body = SSEParser(), ChunkedDecoder()
            while not complete(records):
                chunk = await asyncio.wait_for(reader.read(65536), QUIET)
                assert chunk, f"the stream ended; have {records}"
                for event in parser.feed(body.feed(chunk)):
                    records.extend(subject.records(event))
            tracker = Tracker(kind)
            for record in records:
                if record[0] == "event" and record[1] not in tracker.last:
                    tracker.last[record[1]] = record[2] - 1  # where it resumed
                    tracker.announced.add(record[1])
                if record[0] != "reset":
                    tracker.take(record)
        finally:
            writer.close()
    assert answered.get(200) and sum(answered.values()) > 2 * len(GARBAGE_POSITIONS), answered


async def test_a_feed_cursor_of_the_old_form_is_never_read_as_a_position(servers):
    """``1-1.2-1.f-2`` (entries 1 and 2 at their first event, the feed at 2) was a
    position before the feed's slot was set apart; now it is no cursor: a full replay."""
    srv = servers("wide")
    subject = Subject.make(srv, Kind("feed"), 2)
    ops = [["add", subject.feed, e] for e in subject.ids]
    await srv.script(ops + [op for i in range(2) for op in operations(subject, "send", i, 2)])
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as http:
        for old in ("1-1.2-1.f-2", "f-2.1-1.2-1", "1-1.2-1"):
            records, _ = await read_records(http, subject, old, has(
                *(("event", e, 2) for e in subject.ids)))
            tracker = Tracker(subject.kind)
            for record in records:
                tracker.take(record)  # announced, then each from its first event
            assert tracker.announced == set(subject.ids), (old, records)
