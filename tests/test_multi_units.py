"""Pure parts of streams of many executions: cursors, frames, tokens, settings, joining feeds."""

from __future__ import annotations

import json

import pytest

from django_sse_exec import ExecutionReporter, add_to_feed, feed_stream_url, multi_stream_url
from django_sse_exec.auth.many import make_feed_token, make_set_token
from django_sse_exec.runtime.sync import run_sync
from django_sse_exec.store import get_store
from django_sse_exec.wire import Event
from django_sse_exec.wire.many import (
    cursor_pair,
    feed_cursor,
    feed_log_id,
    feed_pair,
    key_of,
    multi_frame,
    parse_cursor,
    parse_feed_cursor,
    parse_ids,
    validate_feed_name,
)
from tests.test_auth import check_ids


def test_cursor_round_trip_in_base_36():
    pairs = [cursor_pair(key_of(i), p) for i, p in enumerate([0, 5, 36, 10**15])]
    cursor = ".".join(p for p in pairs if p)
    assert cursor == "1-5.2-10.3-9ugxnorjls"
    assert parse_cursor(cursor) == {"1": 5, "2": 36, "3": 10**15}


@pytest.mark.parametrize("garbage", [None, "", "17", "1-", "-5", "1-5.", "1-5.1-6", "1-5!",
                                     "A-5", "1-5;2-6", "1-" + "z" * 14, "x" * 9000])
def test_garbage_cursors_mean_from_the_start(garbage):
    assert parse_cursor(garbage) is None


def test_a_feed_cursor_keeps_its_own_position_apart_from_every_key():
    # Entry 15's key is "f", the key of the feed's own position in the first form.
    cursor = feed_cursor(20, [feed_pair(key_of(15), 5), feed_pair(key_of(16), 0)])
    assert cursor == "k~f-5.g-0"
    assert parse_feed_cursor(cursor, 100) == (20, {"f": 5, "g": 0})
    assert parse_feed_cursor(feed_cursor(7, []), 100) == (7, {})
    assert parse_cursor(cursor) is None  # no set cursor either
    assert parse_feed_cursor("0-5.f-k", 100) is None  # the first form: no position at all
    assert parse_feed_cursor(feed_cursor(1, [feed_pair(key_of(i), 1) for i in range(3)]), 2) is None


@pytest.mark.parametrize("garbage", [None, "", "~", "~1-1", "1~~", "1~1-1~", "1~1-1.1-2", "A~1-1",
                                     "1~1-", "z" * 14 + "~", "1~" + "x" * 9000, "é~"])
def test_garbage_feed_cursors_mean_from_the_start(garbage):
    assert parse_feed_cursor(garbage, 100) is None


def test_frames_wrap_data_and_refuse_line_breaks():
    frame = multi_frame("0-3", "exec-1", Event(3, "step", '{"n":1}'))
    assert frame == (b'id: 0-3\nevent: step\ndata: {"executionId":"exec-1","id":3,'
                     b'"data":{"n":1}}\n\n')
    for bad in (Event(1, "a\nb", "1"), Event(1, "a", "1\r"), Event(1, "a", "\x00")):
        with pytest.raises(ValueError):
            multi_frame("0-1", "exec-1", bad)


def test_ids_are_distinct_valid_and_bounded():
    assert parse_ids("a,b,c", 3) == ["a", "b", "c"]
    for bad in ("", "a,,b", "a,a", "a b", "a,b,c,d", "-a", None):
        assert parse_ids(bad, 3) is None


def test_feed_names_and_their_logs_never_meet_an_execution():
    assert validate_feed_name("user:42") == "user:42"
    for bad in ("", ":x", "a/b", "a b", "x" * 41, 42):
        with pytest.raises((ValueError, TypeError)):
            validate_feed_name(bad)
    logs = {feed_log_id(f) for f in ("a:b", "a_b", "a_cb", "a__b", "a_c_b")}
    assert len(logs) == 5 and all(log.startswith("_") for log in logs)


def test_urls_and_tokens_refuse_bad_input(settings):
    with pytest.raises(ValueError, match="1 to 100"):
        multi_stream_url([])
    with pytest.raises(ValueError, match="1 to 100"):
        multi_stream_url([f"e{i}" for i in range(101)])
    with pytest.raises(ValueError, match="more than once"):
        multi_stream_url(["a", "a"])
    with pytest.raises(ValueError):
        multi_stream_url(["ok", "not ok"])
    with pytest.raises(ValueError):
        feed_stream_url("bad feed")
    assert make_set_token(["a", "b"]) != make_set_token(["b", "a"])
    assert make_feed_token("user:1") != make_feed_token("user:2")


@pytest.mark.parametrize("value, bad", [(100, False), (1, False), (1000, False), (0, True),
                                        (1001, True), ("100", True), (True, True), (2.5, True)])
def test_multi_stream_max_check(settings, value, bad):
    settings.SSE_EXEC = {"MULTI_STREAM_MAX": value}
    assert ("django_sse_exec.E012" in check_ids()) is bad


def feed_entries(feed: str) -> list[str]:
    log = run_sync("read", get_store().read, feed_log_id(feed))
    return [json.loads(e.data)["executionId"] for e in log.events]


def test_reporter_joins_its_feeds_before_it_starts(execution_id):
    with ExecutionReporter(execution_id, total=1, feeds=["user:7", "team:3"]) as report:
        report.task_start("a")
        report.task_complete("a")
    assert feed_entries("user:7")[-1] == execution_id
    assert feed_entries("team:3")[-1] == execution_id
    with pytest.raises(ValueError):
        ExecutionReporter(execution_id, feeds=["no spaces"])
    add_to_feed("user:7", execution_id)  # again: logged, and streams announce it once
    assert feed_entries("user:7")[-2:] == [execution_id, execution_id]
