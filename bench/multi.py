"""Many executions per page: one stream per execution against one stream per page.

    python -m bench.multi                  # 2,000 executions; pages of 20 and of 100
    python -m bench.multi --quick

A "my jobs" page follows E executions. Before, it opened E streams; now it can
open one ``multi_stream_url`` stream. For the same 2,000 executions (each sending
1 event/s, from this process) this measures, per server (daphne with the fast
path, daphne with the view; the pub/sub layer on the local Redis):

* ``per-execution``: 2,000 streams, one per execution;
* ``pages of E``: 2,000/E streams, each of E executions (every event still
  reaches exactly one stream);
* ``200 × one execution`` and ``200 × the same 100``: 200 streams of one
  execution, or of the same 100 (executions many pages follow: what a stream
  itself costs, apart from the executions it follows).

Each row: connect time, server RSS per stream and per stream and execution, server
CPU per delivered event, p50/p99 latency from send to arrival, and events lost.
Each setup runs on a fresh server process, so RSS is not left over from another;
streams connect 5 at a time (``BENCH_CONNECT_CONCURRENCY``), so RSS is what the
open streams hold rather than a connect storm's peak.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

from bench.client import close_all
from bench.run import System, cpu_seconds, delete_run_keys, open_measured, settle, warm_up
from bench.text import fmt, pct

SERVERS = [("fast-daphne", "fast"), ("view-daphne", "view")]
#: Streams connecting at once. RSS is measured once they are all open: a storm of
#: connects leaves its transient memory (a read and a join per execution) in RSS.
CONNECT_CONCURRENCY = int(os.environ.get("BENCH_CONNECT_CONCURRENCY", "5"))


def page_urls(system: System, executions: list[str], per_page: int) -> list[str]:
    """One URL per page of ``per_page`` executions (1: each execution's own stream)."""
    base = f"http://127.0.0.1:{system.port}"
    if per_page == 1:
        return [system.url(e) for e in executions]
    from django_sse_exec import multi_stream_url

    return [base + multi_stream_url(executions[i:i + per_page])
            for i in range(0, len(executions), per_page)]


async def measure(system: System, executions: int, per_page: int, seconds: float,
                  copies: int = 1) -> dict[str, Any]:
    """One setup. ``copies`` > 1: that many streams of the same first page (shared executions)."""
    await warm_up(system)
    run = uuid.uuid4().hex[:8]
    ids = [f"m-{run}-{i}" for i in range(executions)]
    urls = page_urls(system, ids, per_page)
    if copies > 1:
        ids = ids[:per_page]
        urls = urls[:1] * copies
    opened = await open_measured(system, urls, CONNECT_CONCURRENCY)
    streams, sink, ok = opened.streams, opened.sink, opened.ok
    # Every execution sends 1 event/s, spread evenly over each second.
    loop = asyncio.get_running_loop()
    rounds = int(seconds)
    cpu_before = cpu_seconds(system.pid)
    start = loop.time()
    for r in range(rounds):
        for i, execution_id in enumerate(ids):
            delay = start + r + i / len(ids) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await system.send(execution_id)
    expected = rounds * len(ids) * copies
    await settle(sink, expected)
    cpu = cpu_seconds(system.pid) - cpu_before
    close_all(streams)
    await asyncio.sleep(0.5)
    setup = "per-execution" if per_page == 1 else f"pages of {per_page}"
    if copies > 1:
        setup = f"{copies} × one execution" if per_page == 1 else f"{copies} × the same {per_page}"
    return {"setup": setup,
            "streams": len(urls), "ok": ok, "connect_s": opened.seconds,
            "kb_per_stream": opened.rss_growth / max(ok, 1) / 1024,
            "kb_per_execution": opened.rss_growth / (len(ids) * copies) / 1024,
            "us_per_event": cpu / max(sink.events, 1) * 1e6,
            "p50_ms": pct(sink.latencies, 0.5) * 1000, "p99_ms": pct(sink.latencies, 0.99) * 1000,
            "lost": expected - sink.events}


def table(rows: list[dict[str, Any]]) -> str:
    head = ("server", "setup", "streams", "connect s", "KB/stream", "KB/stream·execution",
            "µs/event", "p50 ms", "p99 ms", "lost")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["server"], r["setup"], f"{r['ok']}/{r['streams']}",
                                        fmt(r["connect_s"], ".2f"), fmt(r["kb_per_stream"], ".1f"),
                                        fmt(r["kb_per_execution"], ".2f"), fmt(r["us_per_event"], ".0f"),
                                        fmt(r["p50_ms"], ".1f"), fmt(r["p99_ms"], ".1f"),
                                        str(r["lost"])]) + " |")
    return "\n".join(lines)


async def main(quick: bool, executions: int, seconds: float) -> None:
    if quick:
        executions, seconds = 200, 5
    rows = []
    for name, flavour in SERVERS:
        for per_page, copies in ((1, 1), (20, 1), (100, 1), (1, 200), (100, 200)):
            system = System(name, "daphne", flavour, name)
            system.start()
            try:
                row = await measure(system, executions, per_page, seconds, copies)
            finally:
                system.stop()
            row["server"] = name
            rows.append(row)
            print(f"{name} {row['setup']}: {row}", flush=True)
    print()
    print(f"Many executions per page: {executions} executions, 1 event/s each for {seconds} s "
          f"(load {os.getloadavg()[0]:.1f} at the end, {time.strftime('%Y-%m-%d %H:%M')})")
    print(table(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 executions for 5 s")
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.quick, args.executions, args.seconds))
    finally:
        delete_run_keys()
