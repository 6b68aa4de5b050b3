"""Where a delivered event's time goes, hop by hop, inside a benchmark server.

Set ``BENCH_TRACE=<file>`` in a server's environment (``python -m bench.realistic
--trace`` does, and prints the figures under its table) and this module,
imported by the benchmark's URLconf, wraps the hub's dispatch of channel
messages. For every message it records three clocks, all
on this machine: the sender's stamp in the payload (``"t"``, taken before
``send_sse_event`` runs), Redis's ``TIME`` when the send's script published it
(the message's ``"t"``), and when the hub got it. Every two seconds it writes
the percentiles of the two hops to the file: sender → Redis (the send itself,
and any wait for the CPU before it), and Redis → hub (the channel layer's
receive). The client's own latency minus these is the hub → client hop.

It also lists the bursts of slow messages (start, count: a burst a second
pointed at the repair sweep) and the garbage collector's full collections
(start, ms); ``BENCH_TRACE_SLOW=<seconds>`` puts the server's event loop in
debug mode, which logs every callback that runs longer (slow, for finding).
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from array import array
from typing import Any

from bench.text import pct

PATH = os.environ.get("BENCH_TRACE", "")


#: A message later than this (seconds, Redis -> hub) counts as slow; slow messages
#: less than 50 ms apart form one burst, listed with its start and size.
SLOW = 0.008


def _bursts(times: array) -> list[tuple[float, int]]:
    bursts: list[list[float]] = []
    for t in times:
        if bursts and t - bursts[-1][-1] < 0.05:
            bursts[-1].append(t)
        else:
            bursts.append([t])
    return [(round(b[0] % 1000, 3), len(b)) for b in bursts]


def _stamp(data: str) -> float | None:
    """The sender's ``"t"`` at the start of a payload's JSON, if it has one."""
    if not data.startswith('{"t":'):
        return None
    try:
        return float(data[5:data.index(",")])
    except ValueError:
        return None


def install() -> None:
    """Wrap the hub's dispatch (once) and start writing the figures to ``PATH``."""
    from django_sse_exec.hub.fanout import Fanout

    if getattr(Fanout.dispatch, "traced", False):
        return
    send_hop, receive_hop, slow_at = array("d"), array("d"), array("d")
    original = Fanout.dispatch

    def dispatch(self: Fanout, message: dict[str, Any]) -> None:
        now = time.time()
        published = message.get("t")
        data = message.get("data")
        stamped = _stamp(data) if isinstance(data, str) else None
        if isinstance(published, float) and stamped is not None:
            send_hop.append(published - stamped)
            receive_hop.append(now - published)
            if now - published > SLOW:
                slow_at.append(now)
        original(self, message)

    if os.environ.get("BENCH_TRACE_SLOW"):  # name the loop's callbacks that run for long
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            loop.set_debug(True)
            loop.slow_callback_duration = float(os.environ["BENCH_TRACE_SLOW"])
    dispatch.traced = True  # type: ignore[attr-defined]
    Fanout.dispatch = dispatch  # type: ignore[method-assign]

    collections: list[tuple[float, float]] = []  # (start, ms) of each full collection
    started = [0.0]

    def collected(phase: str, info: dict[str, int]) -> None:
        if info.get("generation") == 2:
            if phase == "start":
                started[0] = time.time()
            else:
                collections.append((round(started[0] % 1000, 3), (time.time() - started[0]) * 1000))

    gc.callbacks.append(collected)

    def write() -> None:
        while True:
            time.sleep(2.0)
            if not receive_hop:  # (the load client imports this module too)
                continue
            figures = {"messages": len(receive_hop)}
            for name, values in (("send", send_hop), ("receive", receive_hop)):
                snapshot = array("d", values)
                figures.update({f"{name}_p50_ms": pct(snapshot, 0.5) * 1000,
                                f"{name}_p99_ms": pct(snapshot, 0.99) * 1000,
                                f"{name}_max_ms": max(snapshot, default=0.0) * 1000})
            figures["slow_bursts"] = _bursts(array("d", slow_at))
            figures["full_collections"] = list(collections)
            with open(PATH, "w") as out:
                json.dump(figures, out)

    threading.Thread(target=write, daemon=True, name="bench-trace").start()


if PATH:
    install()
