"""Metrics, the stream-end log line and tokens in logs, through real servers.

A daphne process (in-memory layer, per-process metrics) is driven through
connects of every outcome, events, a client that goes and a close; its
``/metrics`` and its log must tell exactly that. Two daphne processes on Redis
sharing ``PROMETHEUS_MULTIPROC_DIR`` are scraped through one of them, before and
after the other is killed with ``kill -9``. uvicorn's access log goes through
the app's token-redacting filter.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import wait_for_value
from tests.server import ROOT, Server
from tests.sse import SSEClient
from tests.workers import delete_keys, redis_env


class QuietDaphne(Server):
    """daphne with its access log off (``--access-log /dev/null``): the log holds only
    what the app and daphne's logging write."""

    def command(self) -> list[str]:
        command = super().command()
        return [command[0], "--access-log", os.devnull, *command[1:]]


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(srv: Server) -> Samples:
    resp = httpx.get(srv.base_url + "/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when absent (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_sets(samples: Samples) -> set[str]:
    """Label names of the app's samples."""
    return {key for name, labels in samples if name.startswith("sse_exec_") for key, _ in labels}


async def poll(predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    """Poll the blocking ``predicate`` (it asks a server) from a thread until it is truthy."""
    return await wait_for_value(lambda: asyncio.to_thread(predicate), timeout,
                                what or "condition", interval=0.1)


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


@pytest.mark.parametrize("entry", ["view", "fast"])
async def test_metrics_and_stream_end_lines_tell_what_happened(url_for, execution_id, entry):
    env = {"SSE_FAST_PATH": "1"} if entry == "fast" else {}
    srv = QuietDaphne("daphne", env=env, sse_exec={"KEEPALIVE": 30}).start()
    try:
        url = url_for(srv, execution_id)
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(srv.base_url + f"/sse/executions/{execution_id}/events")
                    ).status_code == 403
            assert (await client.get(srv.base_url + f"/sse/executions/{'x' * 65}/events")
                    ).status_code == 404
        staying, leaving = SSEClient(url), SSEClient(url)
        for client in (staying, leaving):
            await client.connect()
            await client.read_chunk()
        samples = await asyncio.to_thread(scrape, srv)
        assert value(samples, "sse_exec_streams_open", entry_point=entry) == 2

        ids = await srv.asend(execution_id, ("step", {"n": 1}), ("step", {"n": 2}),
                              ("step", {"n": 3}))
        for client in (staying, leaving):
            await client.wait_for(lambda events: len(events) == 3)
        await leaving.close()
        await asyncio.to_thread(srv.close, execution_id)
        events = await staying.read_until_closed()
        assert [e.event for e in events] == ["step"] * 3 + ["stream-closed"]
        await staying.close()
        await poll(lambda: srv.hub()["streams"] == 0, what="streams to end")

        # A reconnect from id 1 replays 2, 3 and stream-closed; one at the end gets 204.
        async with SSEClient(url, headers={"Last-Event-ID": str(ids[0])}) as replay:
            assert [e.event for e in await replay.read_until_closed()] == ["step"] * 2 + [
                "stream-closed"]
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(url, headers={"Last-Event-ID": "4"})).status_code == 204
        await poll(lambda: srv.hub()["streams"] == 0, what="the replay to end")

        samples = await asyncio.to_thread(scrape, srv)
        assert value(samples, "sse_exec_connects_total", entry_point=entry, status="200") == 3
        assert value(samples, "sse_exec_connects_total", entry_point=entry, status="403") == 1
        assert value(samples, "sse_exec_connects_total", entry_point=entry, status="404") == 1
        assert value(samples, "sse_exec_connects_total", entry_point=entry, status="204") == 1
        assert value(samples, "sse_exec_streams_open", entry_point=entry) == 0
        assert value(samples, "sse_exec_events_sent_total") == 3
        # 4 + 3 live, then the replay's 3.
        assert value(samples, "sse_exec_events_delivered_total", entry_point=entry) == 10
        assert value(samples, "sse_exec_replayed_events_total") == 3  # the reconnect's
        assert value(samples, "sse_exec_streams_ended_total", entry_point=entry,
                     reason="closed") == 2
        assert value(samples, "sse_exec_streams_ended_total", entry_point=entry,
                     reason="client_gone") == 1
        assert value(samples, "sse_exec_stream_duration_seconds_count") == 3
        lag = value(samples, "sse_exec_hub_lag_seconds")
        assert 0 <= lag < 5, lag
        # Bounded labels only: no execution id, no user anywhere in the scrape.
        assert label_sets(samples) <= {"entry_point", "status", "reason", "le"}
        text = httpx.get(srv.base_url + "/metrics").text
        assert execution_id not in text
    finally:
        srv.stop()
    log = srv.log()
    lines = [line for line in log.splitlines() if line.startswith("stream ended ")]
    assert f"stream ended execution={execution_id} reason=closed events=4 " in log, lines
    assert f"stream ended execution={execution_id} reason=client_gone events=3 " in log, lines
    assert f"stream ended execution={execution_id} reason=closed events=3 " in log, lines
    assert all(f"entry_point={entry}" in line and "duration=" in line for line in lines), lines
    assert token_of(url) not in log


async def test_multiprocess_scrape_sums_processes_and_forgets_a_killed_one(
        requires_redis, url_for, execution_id, tmp_path):
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {**redis_env(requires_redis), "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    first = Server("daphne", env=env, sse_exec={"KEEPALIVE": 30}).start()
    second = Server("daphne", env=env, sse_exec={"KEEPALIVE": 30}).start()
    clients: list[SSEClient] = []
    try:
        for srv, n in ((first, 2), (second, 3)):
            for _ in range(n):
                client = SSEClient(url_for(srv, execution_id))
                await client.connect()
                await client.read_chunk()
                clients.append(client)
        await second.asend(execution_id, ("step", {"n": 1}))
        for client in clients:
            await client.wait_for(lambda events: len(events) == 1)
        samples = await asyncio.to_thread(scrape, first)
        assert value(samples, "sse_exec_streams_open", entry_point="view") == 5
        assert value(samples, "sse_exec_connects_total", entry_point="view", status="200") == 5
        assert value(samples, "sse_exec_events_delivered_total", entry_point="view") == 5
        assert value(samples, "sse_exec_events_sent_total") == 1
        assert 0 <= value(samples, "sse_exec_hub_lag_seconds") < 5

        second.stop(signal.SIGKILL)
        samples = await asyncio.to_thread(scrape, first)
        assert value(samples, "sse_exec_streams_open", entry_point="view") == 2
        # Counters keep what the killed process counted.
        assert value(samples, "sse_exec_connects_total", entry_point="view", status="200") == 5
        assert not [name for name in os.listdir(directory)
                    if name.startswith("gauge_live") and str(second.proc.pid) in name]
    finally:
        for client in clients[:2]:
            await client.close()
        first.stop()
        second.stop()
        delete_keys(requires_redis, env["TEST_KEY_PREFIX"])


async def test_metrics_are_no_ops_without_prometheus_client():
    code = """
import sys
sys.modules["prometheus_client"] = None  # as if it were not installed
import django
django.setup()
from django_sse_exec.telemetry import metrics
assert not metrics.enabled()
metrics.connected("view", 200); metrics.stream_opened("view"); metrics.event_sent()
metrics.stream_ended("view", "closed", 1.0); metrics.delivered("view", 3, 1)
metrics.hub_dispatched({"t": 1.0}); metrics.store_error(); metrics.replayed(2)
from django.test import RequestFactory
response = metrics.metrics_view(RequestFactory().get("/metrics"))
assert response.status_code == 501, response.status_code
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


async def test_uvicorn_access_log_through_the_filter_has_no_token(url_for, execution_id,
                                                                   tmp_path):
    config = tmp_path / "log.json"
    config.write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "filters": {"tokens": {"()": "django_sse_exec.telemetry.logfilters.RedactTokens"}},
        "handlers": {"access": {"class": "logging.StreamHandler", "filters": ["tokens"],
                                "stream": "ext://sys.stdout"}},
        "loggers": {"uvicorn.access": {"handlers": ["access"], "level": "INFO",
                                       "propagate": False}},
    }))

    class FilteredUvicorn(Server):
        def command(self) -> list[str]:
            command = [c for c in super().command() if c not in ("--log-level", "warning")]
            return [command[0], "--log-config", str(config), *command[1:]]

    srv = FilteredUvicorn("uvicorn").start()
    try:
        url = url_for(srv, execution_id)
        await asyncio.to_thread(srv.close, execution_id)
        async with SSEClient(url) as client:
            assert [e.event for e in await client.read_until_closed()] == ["stream-closed"]
        await poll(lambda: f"/sse/executions/{execution_id}/events" in srv.log(),
                   what="the access log line")
    finally:
        srv.stop()
    log = srv.log()
    assert token_of(url) not in log
    assert f"/sse/executions/{execution_id}/events?token=[redacted]" in log, log[-2000:]


def test_checks_name_unusable_lease_settings_and_metrics_directory(monkeypatch, tmp_path):
    from django.test import override_settings

    from django_sse_exec.checks import check_operations

    with override_settings(SSE_EXEC={"LEASE_TTL": 0, "LEASE_CHECK": "5"}):
        ids = [m.id for m in check_operations()]
    assert ids == ["django_sse_exec.E005", "django_sse_exec.E005"]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    [warning] = check_operations()
    assert warning.id == "django_sse_exec.W008" and "missing" in warning.msg
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert check_operations() == []


def test_redact_filter_removes_tokens_from_messages_and_arguments():
    import logging

    from django_sse_exec.telemetry.logfilters import RedactTokens

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "GET %s" %d', ("1.2.3.4", "/sse/e/x/events?a=1&token=abc.d:e"
                                                    "&last_event_id=3", 200), None)
    assert RedactTokens().filter(record)
    assert record.getMessage() == ('1.2.3.4 - "GET /sse/e/x/events?a=1&token=[redacted]'
                                   '&last_event_id=3" 200')
