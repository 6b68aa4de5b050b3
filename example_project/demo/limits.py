"""How often one visitor may start an execution: ``DEMO_STARTS_PER_MINUTE`` per client address.

The dashboards let anonymous visitors start simulated runs; without a limit one
visitor (a script) could start them back to back, each adding to the feed and
the store. ``DEMO_MAX_RUNNING`` bounds the runs at once; this bounds the rate:
at most ``DEMO_STARTS_PER_MINUTE`` (10 by default, see the settings) starts per
client address in any 60 seconds, counted per web process. A start past it is
refused with 429 and ``Retry-After`` (the seconds until the oldest start leaves
the window).

The visitor is the client address, not a cookie (which a script would simply
drop). Behind a proxy every client has the proxy's address unless the server
takes it from ``X-Forwarded-For`` (daphne ``--proxy-headers``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from django.conf import settings
from django.http import HttpRequest

#: The window the rate is counted over, in seconds.
WINDOW = 60.0
#: Visitors tracked at once; past it, those with no start in the window are forgotten.
TRACKED = 10_000

_starts: dict[str, deque[float]] = {}
_lock = threading.Lock()


def per_minute() -> int:
    """``DEMO_STARTS_PER_MINUTE``: starts one visitor may make in :data:`WINDOW` seconds."""
    return int(getattr(settings, "DEMO_STARTS_PER_MINUTE", 10))


def refusal(wait: int) -> str:
    """What a visitor over the limit is told."""
    return f"at most {per_minute()} starts a minute; try again in {wait} s"


def visitor(request: HttpRequest) -> str:
    """Who is starting: the client address as the server reports it."""
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def _forget_idle(now: float) -> None:
    for key in [k for k, times in _starts.items() if not times or times[-1] <= now - WINDOW]:
        del _starts[key]


def take_start(request: HttpRequest) -> int | None:
    """Count one start for ``request``'s visitor and return None, or, over the limit,
    count nothing and return the seconds to wait (for ``Retry-After``)."""
    limit = per_minute()
    now = time.monotonic()
    key = visitor(request)
    with _lock:
        times = _starts.setdefault(key, deque())
        while times and times[0] <= now - WINDOW:
            times.popleft()
        if len(times) >= limit:
            return max(1, math.ceil(times[0] + WINDOW - now))
        times.append(now)
        if len(_starts) > TRACKED:
            _forget_idle(now)
    return None
