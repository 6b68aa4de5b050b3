"""A Redis outage is one error naming the fix, then one line when it is back.

Through real daphne on a private ``redis-server`` (killed and restarted; the shared
Redis is never touched): streams open and sends going while Redis is gone for a
few seconds. The process logs a handful of records at most, each naming the fix
(the URL and the setting), one line at recovery with the outage's duration; its
streams' keepalives and the connects refused meanwhile say the same in short; its
metrics show one outage with a duration. Plus the tracker and the filter on
channels_redis's receive-task log, in this process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time

import httpx
import pytest
import redis.exceptions

from django_sse_exec.layer.redis.receive_logs import LOGGER, MESSAGE, fold_receive_task_logs
from django_sse_exec.outages import Tracker, report, tracker, unavailable
from tests.helpers import wait_until
from tests.loadclient import Swarm
from tests.sse import SSEClient
from tests.test_faults import PacedSender
from tests.workers import redis_env

REFUSED = redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")


def records(log: str, since: int = 0) -> list[str]:
    """The records of a server started with ``TEST_LOG_RECORDS``, past offset ``since``,
    but those of the test app's own send view (a failed send is its caller's to log)."""
    return [line for line in log[since:].splitlines()
            if line.startswith("RECORD ") and " django.request: " not in line
            and " django_sse_exec.streams: stream ended" not in line]


#: How long Redis stays down (``TEST_OUTAGE_SECONDS=60`` for the issue's minute: the
#: log lines do not depend on it, the duration in the metrics does).
OUTAGE = float(os.environ.get("TEST_OUTAGE_SECONDS", "3"))


@pytest.mark.timeout(90 + OUTAGE)
async def test_redis_outage_logs_one_error_with_the_fix_and_one_recovery_line(
        make_server, url_for, execution_id, private_redis):
    env = {**redis_env(private_redis.url, "pubsub"), "TEST_LOG_RECORDS": "1"}
    srv = make_server("daphne", env=env, sse_exec={
        "HEARTBEAT": 1, "REPAIR_INTERVAL": 0.3, "KEEPALIVE": 0.5, "RETRY_MS": 200})
    watcher = SSEClient(url_for(srv, execution_id))
    await watcher.connect()
    try:
        async with Swarm([url_for(srv, execution_id)] * 10) as swarm, \
                PacedSender(srv, execution_id, every=0.05, tolerant=True) as sender:
            await wait_until(lambda: len(sender.ids) >= 10, 30, what="first events")
            since = len(srv.log())
            private_redis.stop()
            down_at = time.monotonic()
            await wait_until(lambda: any("is unreachable" in r for r in records(srv.log(), since)),
                             10, interval=0.1, what="the outage's error")
            # A stream's keepalive says it; a connect meanwhile is told to retry, and why.
            await watcher.wait_for(lambda _: b"; Redis at" in watcher.raw, 10)
            async with httpx.AsyncClient(timeout=10) as client:
                refused = (await client.get(url_for(srv, execution_id))).text
            await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
            private_redis.start()
            await wait_until(lambda: any("reachable again" in r for r in records(srv.log(), since)),
                             15, interval=0.1, what="the recovery line")
            before = len(sender.ids)
            await wait_until(lambda: len(sender.ids) >= before + 5, 15, what="sends again")
            await wait_until(lambda: all(c.ids[-1:] == sender.ids[-1:] for c in swarm.clients),
                             15, what="streams caught up")
            assert all(len(c.connects) == 1 for c in swarm.clients)  # none had to reconnect
            assert sender.failures  # sends did fail meanwhile: the outage was real
    finally:
        await watcher.close()
    logged = records(srv.log(), since)
    errors = [r for r in logged if not r.startswith("RECORD INFO ")]
    assert 1 <= len(errors) <= 3, logged
    where = private_redis.url
    for line in errors:
        assert where in line and "CHANNEL_LAYERS['default']['CONFIG']['hosts']" in line, line
    back = [r for r in logged if "reachable again" in r]
    assert len(back) == 1 and where in back[0], logged
    assert len(logged) <= 5, logged
    assert f"Redis at {where} unreachable, check CHANNEL_LAYERS" in watcher.raw.decode()
    assert "retry: " in refused and f"Redis at {where} unreachable" in refused, refused
    metrics = httpx.get(srv.base_url + "/metrics").text
    assert re.search(r"^sse_exec_redis_outages_total 1\.0$", metrics, re.M), metrics
    assert re.search(r"^sse_exec_redis_outage_duration_seconds_count 1\.0$", metrics, re.M)
    took = float(re.search(r"^sse_exec_redis_outage_duration_seconds_sum (\S+)$", metrics,
                           re.M).group(1))
    assert OUTAGE - 0.5 < took < OUTAGE + 17, took


def test_tracker_logs_once_per_outage_and_once_at_recovery(caplog):
    caplog.set_level(logging.INFO, logger="django_sse_exec")
    mine = Tracker()
    mine.locate("redis://:***@cache:6379/0", "SSE_EXEC['REDIS_URL']")
    assert mine.recovered() is None and mine.keepalive() == b": keepalive\n\n"
    for _ in range(50):
        mine.failed(REFUSED, "the hub's maintenance")
    assert mine.current is not None and mine.current.failures == 50
    assert mine.keepalive() == (b": keepalive; Redis at redis://:***@cache:6379/0 unreachable, "
                                b"check SSE_EXEC['REDIS_URL']\n\n")
    took = mine.recovered()
    assert took is not None and took >= 0 and mine.ended == 1
    assert mine.keepalive() == b": keepalive\n\n"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "noticed by the hub's maintenance" in lines[0]
    assert "point SSE_EXEC['REDIS_URL'] at one that is" in lines[0]
    assert "reachable again" in lines[1] and "(50 failures during it)" in lines[1]


def test_what_the_tracker_takes_and_what_it_leaves_to_the_caller(caplog):
    caplog.set_level(logging.INFO, logger="django_sse_exec")
    try:
        assert not report(ValueError("a bug"), "x")  # not an outage: the caller logs it
        assert report(REFUSED, "x") and report(ConnectionRefusedError(), "y")
        outage = unavailable("event store", REFUSED)
        assert outage is not None and "unreachable, check" in str(outage)
        assert tracker.current is not None and tracker.current.failures == 3
    finally:
        tracker.recovered()
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_channels_redis_receive_task_errors_fold_into_the_outage(caplog):
    caplog.set_level(logging.INFO)
    assert fold_receive_task_logs()
    fold_receive_task_logs()  # once, however often
    channels_logger = logging.getLogger(LOGGER)
    assert len(channels_logger.filters) == 1
    try:
        for _ in range(20):
            try:
                raise REFUSED
            except redis.exceptions.ConnectionError:
                channels_logger.exception(MESSAGE)
        try:
            raise KeyError("a bug")
        except KeyError:
            channels_logger.exception(MESSAGE)  # not an outage: logged as channels_redis does
    finally:
        tracker.recovered()
    mine = [(r.name, r.getMessage()) for r in caplog.records]
    assert [name for name, _ in mine] == ["django_sse_exec", LOGGER, "django_sse_exec"], mine
    assert "unreachable" in mine[0][1] and "reachable again" in mine[2][1]
