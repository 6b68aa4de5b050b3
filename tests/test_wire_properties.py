"""Property-based tests of the wire encoder against the spec-conforming parser in tests/sse.py.

For any event name the validator accepts and any JSON-serialisable data, what a
browser parses back is exactly the name, the id and the data; any name it
rejects raises at the call site and nothing is logged or sent.
"""

from __future__ import annotations

import json
import uuid

import pytest
from channels.layers import InMemoryChannelLayer
from django.test import override_settings
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import django_sse_exec as sse
from django_sse_exec.conf import sse_settings
from django_sse_exec.layer.names import group_name
from django_sse_exec.wire import (
    EVENT_NAME_RE,
    EXECUTION_ID_RE,
    KEEPALIVE,
    RESERVED_PREFIX,
    Event,
    encode_data,
    frame,
    parse_last_event_id,
    preamble,
    validate_event_name,
    validate_execution_id,
)
from tests.sse import SSEParser

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Characters that break naive encoders or parsers, mixed into generated text.
AWKWARD = "\r\n\0\t\x0b\x0c\x1b\x7f\x85\u2028\u2029\ufeff\"\\:é€😀"

text = st.text(st.characters(codec="utf-8") | st.sampled_from(AWKWARD), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=25,
)
accepted_names = st.from_regex(EVENT_NAME_RE, fullmatch=True).filter(
    lambda name: not name.startswith(RESERVED_PREFIX))
event_ids = st.integers(min_value=1, max_value=2**53)


def injected(name: str, bad: str, at: int) -> str:
    at = at % (len(name) + 1)
    return name[:at] + bad + name[at:]


rejected_names = st.one_of(
    st.text(max_size=80).filter(
        lambda s: not EVENT_NAME_RE.fullmatch(s) or s.startswith(RESERVED_PREFIX)),
    st.builds(injected, accepted_names, st.sampled_from(["\n", "\r", "\r\n", "\0", " ", "\u2028"]),
              st.integers(0, 64)),
    st.builds(lambda s: RESERVED_PREFIX + s, st.from_regex(r"[a-z-]{0,20}", fullmatch=True)),
    st.from_regex(r"[A-Za-z0-9._:-]{65,90}", fullmatch=True),
)


def chunks(raw: bytes, cuts: list[int]) -> list[bytes]:
    """``raw`` split at the given positions (arbitrary, even inside a UTF-8 sequence)."""
    points = sorted({c % (len(raw) + 1) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)])]


def parse(raw: bytes, cuts: list[int]) -> tuple[SSEParser, list]:
    parser = SSEParser()
    events = []
    for part in chunks(raw, cuts):
        events.extend(parser.feed(part))
    return parser, events


@FAST
@given(name=accepted_names, event_id=event_ids, data=json_values,
       cuts=st.lists(st.integers(0, 10_000), max_size=6))
def test_any_accepted_event_round_trips(name, event_id, data, cuts):
    text_ = encode_data(data)
    parser, events = parse(frame(Event(event_id, validate_event_name(name), text_)), cuts)
    assert len(events) == 1
    assert (events[0].event, events[0].id) == (name, str(event_id))
    assert json.loads(events[0].data) == data
    assert parser.last_event_id == str(event_id)


@FAST
@given(batch=st.lists(st.tuples(accepted_names, json_values), min_size=1, max_size=6),
       cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_a_whole_stream_round_trips(batch, cuts):
    raw = preamble(2000) + b"".join(
        frame(Event(i, name, encode_data(data))) + (KEEPALIVE if i % 2 else b"")
        for i, (name, data) in enumerate(batch, start=1))
    parser, events = parse(raw, cuts)
    assert [(e.int_id, e.event, e.json) for e in events] == [
        (i, name, data) for i, (name, data) in enumerate(batch, start=1)]
    assert parser.retry == 2000


@FAST
@given(name=rejected_names)
def test_any_rejected_name_raises(name):
    with pytest.raises(ValueError):
        validate_event_name(name)


@pytest.fixture(scope="module")
def memory_api():
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
                           SSE_EXEC={"STORE": "memory"}):
        yield


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=rejected_names, data=json_values)
def test_rejected_name_writes_nothing(memory_api, name, data):
    execution_id = f"p-{uuid.uuid4().hex[:16]}"
    with pytest.raises(ValueError):
        sse.send_sse_event(execution_id, name, data)
    assert sse.send_sse_event(execution_id, "ok", data) == 1  # the failed call logged nothing


@FAST
@given(execution_id=st.from_regex(EXECUTION_ID_RE, fullmatch=True))
def test_accepted_ids_stay_inside_the_prefix(execution_id):
    group = group_name(validate_execution_id(execution_id))
    prefix = f"{sse_settings.KEY_PREFIX}."
    assert group.startswith(prefix) and group[len(prefix):] == execution_id
    assert InMemoryChannelLayer().require_valid_group_name(group)


@FAST
@given(execution_id=st.text(max_size=80))
def test_ids_with_anything_outside_the_alphabet_are_rejected(execution_id):
    assume(not EXECUTION_ID_RE.fullmatch(execution_id))
    with pytest.raises(ValueError):
        validate_execution_id(execution_id)


@FAST
@given(value=st.one_of(st.text(max_size=30), st.integers().map(str)))
def test_last_event_id_is_a_small_non_negative_int_or_none(value):
    parsed = parse_last_event_id(value)
    if parsed is not None:
        assert 0 <= parsed < 10**18 and parsed == int(value.strip())
        assert value.strip().isascii() and value.strip().isdigit()


@FAST
@given(execution_id=st.from_regex(EXECUTION_ID_RE, fullmatch=True),
       part=st.sampled_from(["last", "events", "closed", "members"]))
def test_redis_keys_of_accepted_ids_stay_inside_the_prefix(execution_id, part):
    from django_sse_exec.store.redis import RedisStore

    store = RedisStore(url="redis://127.0.0.1:6379/0", prefix="app")
    key = store.key(validate_execution_id(execution_id), part)
    assert key == f"app:{{{execution_id}}}:{part}"
    assert key.count("{") == key.count("}") == 1  # one hash tag, exactly the id
    assert not any(c in execution_id for c in "*?[]:{} \\")  # no glob, separator or tag
