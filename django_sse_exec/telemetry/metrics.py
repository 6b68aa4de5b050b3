"""Prometheus metrics of the app, and the ``/metrics`` view; no-ops without ``prometheus_client``.

Someone on call needs to see what the app does: how many streams are open, how
connects end, how many events go out, how far behind the hub is. The rest of the
code calls the small functions here (one line per hook); they do nothing when
``prometheus_client`` (the ``prometheus`` extra) is not installed.

No label carries an execution id or a user: label values come from small fixed
sets (entry point, HTTP status, end reason), so the number of series is bounded
whatever the traffic.

Several processes: with ``PROMETHEUS_MULTIPROC_DIR`` set in the environment of
every process (web servers *and* producers on the host, before they start),
``prometheus_client`` keeps each process's values in files there and
:func:`metrics_view` sums them, so one scrape of any web process shows the whole
host. Gauges of processes that are gone (killed with ``kill -9`` included) are
dropped at the next scrape. Without it, each process reports its own values.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import time
from typing import Any

from django.http import HttpResponse

try:  # the optional extra
    import prometheus_client as _prom
    from prometheus_client import multiprocess as _multiprocess
except ImportError:  # pragma: no cover - exercised by a test in a subprocess
    _prom = None  # type: ignore[assignment]
    _multiprocess = None  # type: ignore[assignment]

#: Where streams are served from: "view" (the Django view) or "fast" (the ASGI fast path).
ENTRY_POINTS = ("view", "fast")
#: Why streams end (the ``reason`` label of ``sse_exec_streams_ended_total``).
END_REASONS = ("closed", "client_gone", "slow", "lifetime", "shutdown", "reset", "token_expired",
               "error")

logger = logging.getLogger("django_sse_exec")


class _Metrics:
    """The app's metric objects, registered once in prometheus_client's default registry."""

    def __init__(self, prom: Any) -> None:
        gauge, counter = prom.Gauge, prom.Counter
        self.streams_open = gauge(
            "sse_exec_streams_open", "Streams open now, by entry point",
            ["entry_point"], multiprocess_mode="livesum")
        self.connects = counter(
            "sse_exec_connects", "Stream requests, by entry point and response status",
            ["entry_point", "status"])
        self.events_sent = counter(
            "sse_exec_events_sent", "Events logged by producers in this process "
            "(send_sse_event and its twins)")
        self.events_delivered = counter(
            "sse_exec_events_delivered", "Events written to streams (one per stream per event)",
            ["entry_point"])
        #: Its series per entry point, looked up once: streams count every write.
        self.delivered_by = {entry_point: self.events_delivered.labels(entry_point)
                             for entry_point in ENTRY_POINTS}
        self.replayed = counter(
            "sse_exec_replayed_events", "Events streams read from the log rather than live "
            "(replay on connect, gap repair, catch-up)")
        self.resets = counter(
            "sse_exec_resets", "stream-reset events sent (history trimmed or log lost)")
        self.ended = counter(
            "sse_exec_streams_ended", "Streams ended, by entry point and reason",
            ["entry_point", "reason"])
        self.duration = prom.Histogram(
            "sse_exec_stream_duration_seconds", "How long streams stayed open",
            buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600))
        self.hub_lag = gauge(
            "sse_exec_hub_lag_seconds", "Now minus the send time of the last event a hub "
            "delivered to its streams (worst process)", multiprocess_mode="livemax")
        self.store_errors = counter(
            "sse_exec_store_errors", "Store operations that failed (store unavailable)")
        self.lost = counter(
            "sse_exec_executions_lost", "Executions ended because their producer's lease expired")
        self.outages = counter(
            "sse_exec_redis_outages", "Redis outages this process noticed (one per outage, "
            "however many failures it caused)")
        self.outage_duration = prom.Histogram(
            "sse_exec_redis_outage_duration_seconds", "How long Redis outages lasted, "
            "observed when Redis answers again",
            buckets=(1, 5, 15, 60, 300, 900, 3600))


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` when set (multiprocess mode), else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def multiprocess_dir_problem() -> str | None:
    """Why ``PROMETHEUS_MULTIPROC_DIR`` cannot be used (metrics are then off), or None."""
    directory = multiprocess_dir()
    if directory is None or (os.path.isdir(directory) and os.access(directory, os.W_OK)):
        return None
    return f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not a writable directory"


def _build() -> _Metrics | None:
    if _prom is None:
        return None
    problem = multiprocess_dir_problem()
    if problem is not None:  # every metric write would raise, in the middle of streams
        logger.warning("metrics are off: %s", problem)
        return None
    return _Metrics(_prom)


_m: _Metrics | None = _build()


def enabled() -> bool:
    """True when ``prometheus_client`` is installed (metrics are collected)."""
    return _m is not None


# -- hooks (each a no-op without prometheus_client) ------------------------------


def connected(entry_point: str, status: int) -> None:
    """A stream request was answered with ``status``."""
    if _m is not None:
        _m.connects.labels(entry_point, str(status)).inc()


def stream_opened(entry_point: str) -> None:
    """A stream started (after its subscription)."""
    if _m is not None:
        _m.streams_open.labels(entry_point).inc()


def stream_ended(entry_point: str, reason: str, duration: float) -> None:
    """A stream ended for ``reason`` (one of :data:`END_REASONS`) after ``duration`` seconds."""
    if _m is not None:
        _m.streams_open.labels(entry_point).dec()
        _m.ended.labels(entry_point, reason).inc()
        _m.duration.observe(duration)


def delivered(entry_point: str, events: int, resets: int = 0) -> None:
    """A stream wrote ``events`` events, ``resets`` of them ``stream-reset``."""
    if _m is not None:
        if events:
            _m.delivered_by[entry_point].inc(events)
        if resets:
            _m.resets.inc(resets)


def event_sent() -> None:
    """A producer logged an event."""
    if _m is not None:
        _m.events_sent.inc()


def replayed(events: int) -> None:
    """A stream read ``events`` events from the log."""
    if _m is not None and events:
        _m.replayed.inc(events)


def hub_dispatched(message: dict[str, Any]) -> None:
    """A hub fanned out ``message``; its ``"t"`` (send time) gives the lag, if present."""
    if _m is not None:
        sent_at = message.get("t")
        if isinstance(sent_at, (int, float)):
            _m.hub_lag.set(max(0.0, time.time() - sent_at))


def store_error() -> None:
    """A store operation failed."""
    if _m is not None:
        _m.store_errors.inc()


def execution_lost() -> None:
    """An execution was ended because its lease expired."""
    if _m is not None:
        _m.lost.inc()


def outage_started() -> None:
    """This process noticed that Redis is down."""
    if _m is not None:
        _m.outages.inc()


def outage_ended(duration: float) -> None:
    """Redis answered again after ``duration`` seconds of outage."""
    if _m is not None:
        _m.outage_duration.observe(duration)


# -- exposition -------------------------------------------------------------------


_LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def forget_dead_processes(directory: str) -> list[int]:
    """Drop the live gauges of processes of this host that no longer run; return their pids.

    ``prometheus_client`` expects a server hook to call ``mark_process_dead`` for
    each exited worker; daphne and uvicorn have none, and a killed process calls
    nothing. So the scrape does it: a gauge file whose pid is not running goes.
    """
    dead: set[int] = set()
    for name in os.listdir(directory):
        match = _LIVE_FILE.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:
            pass  # running, as another user
    for pid in dead:
        _multiprocess.mark_process_dead(pid, directory)
    return sorted(dead)


def exposition() -> tuple[bytes, str]:
    """The text of a scrape and its content type (every process of the host in
    multiprocess mode, this process otherwise)."""
    if _prom is None:
        raise RuntimeError("prometheus_client is not installed: install the [prometheus] extra")
    directory = multiprocess_dir()
    if directory is None:
        return _prom.generate_latest(_prom.REGISTRY), _prom.CONTENT_TYPE_LATEST
    forget_dead_processes(directory)
    registry = _prom.CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, path=directory)
    return _prom.generate_latest(registry), _prom.CONTENT_TYPE_LATEST


def metrics_view(request: Any) -> Any:
    """Django view of ``/metrics`` (keep it off the public internet: it is operational data)."""
    if _m is None:
        return HttpResponse("metrics are off: prometheus_client is not installed or "
                            "PROMETHEUS_MULTIPROC_DIR is unusable\n", status=501,
                            content_type="text/plain; charset=utf-8")
    body, content_type = exposition()
    return HttpResponse(body, content_type=content_type)


def _mark_exit() -> None:
    directory = multiprocess_dir()
    if directory is not None and _multiprocess is not None:
        _multiprocess.mark_process_dead(os.getpid(), directory)


atexit.register(_mark_exit)

__all__ = [
    "END_REASONS", "ENTRY_POINTS", "connected", "delivered", "enabled", "event_sent",
    "execution_lost", "exposition", "forget_dead_processes", "hub_dispatched", "metrics_view",
    "multiprocess_dir", "multiprocess_dir_problem", "outage_ended", "outage_started", "replayed",
    "store_error", "stream_ended", "stream_opened",
]
