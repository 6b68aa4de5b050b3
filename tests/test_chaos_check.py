"""The chaos run's rules (tests.chaos_check) on hand-made sequences: pure, no servers."""

from __future__ import annotations

from tests.chaos_check import CLOSED, RESET, Received, Sent, check_client, incarnations


def record(*ids):
    """Sends with these returned ids (None: failed), q = position."""
    return [Sent(q, i) for q, i in enumerate(ids)]


def got(sends, *qs, reset_before=(), closed=True):
    """Events for the sends at positions ``qs`` (a reset before the positions in reset_before)."""
    events = []
    for q in qs:
        if q in reset_before:
            events.append(Received(None, RESET))
        events.append(Received(sends[q].id, "tick", q))
    if closed:
        events.append(Received(999, CLOSED))
    return events


def test_incarnations_split_where_ids_restart_or_jump():
    sends = record(1, 2, None, 4, 1, 2, None, None, 5_000_001, 5_000_002)
    assert [inc.ids for inc in incarnations(sends)] == [[1, 2, 4], [1, 2], [5_000_001, 5_000_002]]


def test_a_restart_with_data_is_one_incarnation_even_after_failed_sends():
    sends = record(1, 2, None, None, None, 3, 4)
    assert [inc.ids for inc in incarnations(sends)] == [[1, 2, 3, 4]]


def test_everything_once_in_order_is_ok():
    sends = record(1, 2, 3)
    verdict = check_client(got(sends, 0, 1, 2), incarnations(sends), True)
    assert verdict.ok and verdict.received == 3


def test_a_gap_a_repeat_and_a_stream_that_never_ended_are_errors():
    sends = record(1, 2, 3, 4)
    incs = incarnations(sends)
    assert check_client(got(sends, 0, 2, 3), incs, True).lost == 1
    assert check_client(got(sends, 0, 1, 1, 2, 3), incs, True).duplicated == 1
    assert check_client(got(sends, 0, 1, 3, 2), incs, True).out_of_order == 1
    assert not check_client(got(sends, 0, 1, 2, 3), incs, False).ok


def test_a_failed_send_may_appear_once_or_not_at_all():
    sends = record(1, None, 3)
    incs = incarnations(sends)
    assert check_client(got(sends, 0, 2), incs, True).ok
    assert check_client(got(sends, 0, 1, 2), incs, True).ok


def test_after_a_lost_log_a_reset_and_the_whole_new_log_is_ok():
    sends = record(1, 2, 3, 1, 2)  # the log was lost after id 3
    incs = incarnations(sends)
    verdict = check_client(got(sends, 0, 1, 3, 4, reset_before={3}), incs, True)
    assert verdict.ok, verdict.errors
    assert verdict.tail_lost_with_log == 1 and verdict.resets == 1


def test_after_a_lost_log_the_new_log_without_a_reset_is_ok_only_when_nothing_was_missed():
    sends = record(1, 2, 1, 2)
    incs = incarnations(sends)
    assert check_client(got(sends, 0, 1, 2, 3), incs, True).ok
    verdict = check_client(got(sends, 0, 2, 3), incs, True)
    assert verdict.lost == 1, verdict


def test_a_reset_into_part_of_the_new_log_or_the_same_log_is_an_error():
    sends = record(1, 2, 3, 1, 2, 3)
    incs = incarnations(sends)
    skipped = check_client(got(sends, 0, 1, 4, 5, reset_before={4}), incs, True)
    assert skipped.lost == 1 and not skipped.ok  # id 1 of the new log skipped
    events = got(sends, 0, 1, closed=False) + [Received(None, RESET)] + got(sends, 0, 1, 2, 3, 4, 5)
    needless = check_client(events, incs, True)
    assert needless.needless_resets == 1 and needless.duplicated == 2 and not needless.ok


def test_ending_early_is_lost_events():
    # The old-log client told "closed" (204) before it saw the new log.
    sends = record(1, 2, 3, 1, 2)
    verdict = check_client(got(sends, 0, 1, 2, closed=False), incarnations(sends), True)
    assert verdict.lost == 2 and not verdict.ok
