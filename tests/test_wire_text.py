"""The text encoder of HTML fragments, against the spec-conforming parser in tests/sse.py.

Whatever the text (line breaks of every kind, NUL, things that look like SSE
fields), a browser parses back one event with the same id and name and the
text with its line breaks made LF: no line can forge a field of its own.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_sse_exec.wire import text_frame
from tests.sse import SSEParser

AWKWARD = "\r\n\0\t:<>\"'&é😀\u2028\ufeff"
TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]) | st.sampled_from(AWKWARD),
               max_size=300)


def parse(data: bytes) -> list:
    return SSEParser().feed(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, event_id=st.one_of(st.none(), st.integers(1, 10**12)),
       name=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)))
def test_any_text_parses_back_as_one_event(text, event_id, name):
    events = parse(text_frame(event_id, name, text))
    assert len(events) == 1
    expected = re.sub(r"\r\n|\r|\n", "\n", text).replace("\0", "\ufffd")
    assert events[0].data == expected
    assert events[0].event == (name or "message")
    assert events[0].id == (str(event_id) if event_id is not None else None)


def test_lines_that_look_like_fields_stay_data():
    raw = text_frame(7, "task-start", "<p>\nid: 99\nevent: stream-closed\r\ndata: x\r\r</p>")
    assert raw == (b"id: 7\nevent: task-start\ndata: <p>\ndata: id: 99\ndata: event: stream-closed\n"
                   b"data: data: x\ndata: \ndata: </p>\n\n")
    [event] = parse(raw)
    assert (event.id, event.event) == ("7", "task-start")


def test_unnamed_message_without_id_keeps_the_last_event_id():
    parser = SSEParser()
    events = parser.feed(text_frame(3, "a", "x") + text_frame(None, None, "state"))
    assert [(e.event, e.id, e.data) for e in events] == [("a", "3", "x"), ("message", "3", "state")]


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "a\0b"])
def test_a_name_with_a_break_raises(name):
    with pytest.raises(ValueError):
        text_frame(1, name, "x")
