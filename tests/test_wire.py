"""Unit tests of wire.py: validation, encoding, framing, and attempts to inject SSE fields."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid

import pytest

from django_sse_exec.streams.connect import last_event_id_of
from django_sse_exec.wire import (
    KEEPALIVE,
    Event,
    encode_data,
    frame,
    frames,
    is_valid_execution_id,
    parse_last_event_id,
    preamble,
    validate_event_name,
    validate_execution_id,
)
from tests.sse import SSEParser

# -- execution ids: never outside the app's keys, groups or URL path -------------

BAD_EXECUTION_IDS = [
    "", ".", "..", "../x", "-x", "_x", ".hidden", "a" * 65, "a b", " a", "a ", "a\tb",
    "a:b", "a*", "*", "a?", "a[b]", "{a}", "a{b}", "a/b", "a\\b", "a%2Fb", "a;b", "a\nb",
    "a\rb", "a\0b", "exec\u20101",  # U+2010 hyphen look-alike
    "ex\u0435c",  # Cyrillic "е"
    "\uff41",  # fullwidth "a"
    "\u0661",  # Arabic-Indic digit one
    "a\u200b",  # zero-width space
]


@pytest.mark.parametrize("bad", BAD_EXECUTION_IDS)
def test_bad_execution_ids_are_rejected(bad):
    assert not is_valid_execution_id(bad)
    with pytest.raises(ValueError, match="invalid execution_id"):
        validate_execution_id(bad)


@pytest.mark.parametrize("good", ["a", "9", "exec-42", "t-0123456789abcdef", "a..b", "a.", "A_b-c.d",
                                  "x" * 64, "exec-1700000000000"])
def test_good_execution_ids_are_accepted(good):
    assert validate_execution_id(good) == good
    assert is_valid_execution_id(good)


@pytest.mark.parametrize("bad", [None, 42, b"exec-1", ["exec-1"]])
def test_execution_id_must_be_str(bad):
    assert not is_valid_execution_id(bad)
    with pytest.raises(TypeError):
        validate_execution_id(bad)


# -- event names: no CR, LF, NUL, no reserved names ----------------------------

INJECTIONS = ["a\nb", "a\rb", "a\r\nb", "a\0b", "x\ndata: forged", "x\r\nid: 999",
              "x\n\nevent: stream-closed", "\n", "\r", "\0", "a b", "é", "a\u2028b", ""]


@pytest.mark.parametrize("bad", INJECTIONS + ["x" * 65])
def test_event_names_that_could_forge_fields_are_rejected(bad):
    with pytest.raises(ValueError, match="invalid event name"):
        validate_event_name(bad)


@pytest.mark.parametrize("reserved", ["stream-closed", "stream-reset", "stream-", "stream-anything"])
def test_reserved_event_names_are_rejected(reserved):
    with pytest.raises(ValueError, match="reserved"):
        validate_event_name(reserved)


@pytest.mark.parametrize("good", ["task-start", "a", "ns:event", "a.b_c-d", "x" * 64, "streams",
                                  "Stream-closed", "message"])
def test_good_event_names(good):
    assert validate_event_name(good) == good


def test_event_name_must_be_str():
    with pytest.raises(TypeError):
        validate_event_name(None)


# -- data: compact JSON on one line, or a clear error at the call site ------------


def test_data_is_compact_utf8_json_on_one_line():
    data = {"text": "héllo\nworld\r\0\u2028\u2029\u0085", "n": [1, 2.5, None, True]}
    text = encode_data(data)
    assert text == ('{"text":"héllo\\nworld\\r\\u0000\u2028\u2029\u0085",'
                    '"n":[1,2.5,null,true]}')
    assert "\n" not in text and "\r" not in text and "\0" not in text
    assert json.loads(text) == data


def test_django_types_are_encoded():
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    key = uuid.UUID(int=1)
    text = encode_data({"at": when, "d": decimal.Decimal("1.50"), "id": key})
    assert json.loads(text) == {"at": "2024-01-02T03:04:05Z", "d": "1.50", "id": str(key)}


@pytest.mark.parametrize("bad, error, message", [
    ({"a": object()}, TypeError, "not JSON-serialisable"),
    ({1, 2}, TypeError, "not JSON-serialisable"),
    ({(1, 2): "tuple key"}, TypeError, "not JSON-serialisable"),
    (float("nan"), ValueError, "not JSON-serialisable"),
    ({"x": float("inf")}, ValueError, "not JSON-serialisable"),
    ("\ud800", ValueError, "UTF-8"),
    ({"\udfff": 1}, ValueError, "UTF-8"),
])
def test_unserialisable_data_fails_with_a_clear_error(bad, error, message):
    with pytest.raises(error, match=message):
        encode_data(bad)


def test_circular_and_deeply_nested_data_fail_cleanly():
    circular: list = []
    circular.append(circular)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        encode_data(circular)
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        encode_data(deep)


def test_size_limit_counts_utf8_bytes_exactly():
    assert encode_data("é" * 4, max_bytes=10) == '"éééé"'  # 2 + 4 * 2 bytes
    with pytest.raises(ValueError, match="11 bytes of JSON, over the limit of 10"):
        encode_data("é" * 4 + "x", max_bytes=10)
    with pytest.raises(ValueError, match="over the limit"):
        encode_data({"blob": "x" * 10_000_000}, max_bytes=65536)


# -- frames ------------------------------------------------------------------


def test_frame_format_and_parse_back():
    event = Event(7, "task-complete", encode_data({"taskId": "t", "s": "a\nb\u2028"}))
    raw = frame(event)
    assert raw == ('id: 7\nevent: task-complete\ndata: {"taskId":"t","s":"a\\nb\u2028"}\n\n').encode()
    parsed = SSEParser().feed(raw)
    assert [(e.id, e.event, e.json) for e in parsed] == [("7", "task-complete", {"taskId": "t", "s": "a\nb\u2028"})]


@pytest.mark.parametrize("name, data", [
    ("ok\ndata: forged", '"x"'), ("ok\rid: 1", '"x"'), ("ok\0", '"x"'),
    ("ok", '"x"\ndata: forged'), ("ok", '"x"\r\nevent: stream-closed'), ("ok", '"x\0"'),
])
def test_frame_refuses_line_breaks_that_bypassed_validation(name, data):
    with pytest.raises(ValueError, match="line break or NUL"):
        frame(Event(1, name, data))


def test_frames_join_and_preamble_and_keepalive():
    events = [Event(1, "a", "1"), Event(2, "b", "2")]
    assert frames(events) == frame(events[0]) + frame(events[1])
    parser = SSEParser()
    assert parser.feed(preamble(2000) + KEEPALIVE) == []
    assert parser.retry == 2000
    assert parser.comments == ["connected", "keepalive"]
    assert preamble(1500).startswith(b"retry: 1500\n")


# -- Last-Event-ID garbage is ignored (full replay), never an error ----------------


@pytest.mark.parametrize("garbage", [None, "", " ", "-1", "-0", "+5", "1.5", "1e3", "0x10", "abc",
                                     "9" * 19, "9" * 10_000, "١٢", "²", "1\n2", "1 2", "\0",
                                     "NaN", "Infinity"])
def test_last_event_id_garbage_is_none(garbage):
    assert parse_last_event_id(garbage) is None


@pytest.mark.parametrize("value, expected", [("0", 0), ("7", 7), (" 42 ", 42), ("007", 7),
                                             ("9" * 18, int("9" * 18))])
def test_last_event_id_valid(value, expected):
    assert parse_last_event_id(value) == expected


def test_header_wins_over_query_and_garbage_header_falls_back():
    assert last_event_id_of("5", "9") == 5
    assert last_event_id_of("junk", "9") == 9
    assert last_event_id_of(None, "-3") is None
    assert last_event_id_of("9" * 10_000, None) is None
