"""How cost grows: connections 100 → 10,000 on one execution, executions 1 → 10,000.

    python -m bench.scaling                       # fast path on uvicorn, writes docs/scaling.png
    python -m bench.scaling --system fast-daphne --quick

Each point starts a fresh server (so memory freed by the previous point does not
hide this one's), connects the streams, records RSS, then sends paced events
(no batching: every event is its own write to every stream) and records the
server's CPU time per delivered event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import override_settings

from bench.client import Sink, close_all, open_streams
from bench.run import ROOT, SYSTEMS, System, cpu_seconds, delete_run_keys, rss, settle, wait_streams, warm_up

CONNECTIONS = [100, 1000, 3000, 10_000]
EXECUTIONS = [1, 10, 100, 1000, 10_000]
#: Streams in the executions series (spread evenly over the executions).
EXECUTION_SERIES_STREAMS = 10_000


async def point(system: System, streams: int, executions: int, rounds: int,
                rate: float = 10.0) -> dict[str, Any]:
    """One measurement on a fresh server: RSS per stream and server CPU per delivered event."""
    system.start()
    try:
        await warm_up(system)
        base = rss(system.pid)
        run = uuid.uuid4().hex[:8]
        ids = [f"scale-{run}-{i}" for i in range(executions)]
        sink = Sink()
        sink.record_latency = False
        conns, connect_s = await open_streams([system.url(ids[i % executions]) for i in range(streams)],
                                              sink, concurrency=2000, timeout=180)
        ok = sum(1 for c in conns if c.status == 200 and not c.closed)
        await wait_streams(system, ok, timeout=60)
        await asyncio.sleep(1.0)
        per_stream_kb = (rss(system.pid) - base) / max(ok, 1) / 1024
        cpu_before = cpu_seconds(system.pid)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for r in range(rounds):
            delay = start + r / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            for execution_id in ids:
                await system.send(execution_id)
        await settle(sink, rounds * ok, quiet=3)
        cpu = cpu_seconds(system.pid) - cpu_before
        close_all(conns)
        return {"streams": streams, "executions": executions, "ok": ok, "connect_s": connect_s,
                "rss_kb_per_stream": per_stream_kb, "rounds": rounds, "delivered": sink.events,
                "expected": rounds * ok, "us_per_delivered": cpu / max(sink.events, 1) * 1e6}
    finally:
        system.stop()


def plot(results: dict[str, list[dict[str, Any]]], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for col, (series, key, xlabel) in enumerate([
            ("connections", "streams", "streams on one execution"),
            ("executions", "executions", f"executions ({EXECUTION_SERIES_STREAMS:,} streams spread over them)")]):
        rows = results[series]
        xs = [r[key] for r in rows]
        for row, (metric, ylabel) in enumerate([("us_per_delivered", "server CPU µs per delivered event"),
                                                ("rss_kb_per_stream", "server RSS KB per stream")]):
            ax = axes[row][col]
            ax.plot(xs, [r[metric] for r in rows], marker="o")
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)
            ax.grid(True, which="both", alpha=0.3)
            for x, r in zip(xs, rows):
                ax.annotate(f"{r[metric]:.1f}", (x, r[metric]), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--system", default="fast-uvicorn", choices=sorted(SYSTEMS))
    parser.add_argument("--quick", action="store_true", help="small sizes (checks the script)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "scaling.png"))
    args = parser.parse_args()
    system = SYSTEMS[args.system]
    connections = [100, 300] if args.quick else CONNECTIONS
    executions = [1, 10, 100] if args.quick else EXECUTIONS
    streams = 300 if args.quick else EXECUTION_SERIES_STREAMS
    results: dict[str, list[dict[str, Any]]] = {"connections": [], "executions": []}
    with override_settings(SSE_EXEC={**settings.SSE_EXEC, "CHANNEL_LAYER": system.layer}):
        for n in connections:
            r = asyncio.run(point(system, n, 1, rounds=20))
            print(json.dumps(r), flush=True)
            results["connections"].append(r)
        for e in executions:
            r = asyncio.run(point(system, streams, e, rounds=max(1, min(20, 2000 // e))))
            print(json.dumps(r), flush=True)
            results["executions"].append(r)
    print("\n| series | streams | executions | connected in s | RSS KB/stream | µs/delivered | delivered |")
    print("|---|---|---|---|---|---|---|")
    for series, rows in results.items():
        for r in rows:
            print(f"| {series} | {r['streams']} | {r['executions']} | {r['connect_s']:.2f} | "
                  f"{r['rss_kb_per_stream']:.1f} | {r['us_per_delivered']:.1f} | "
                  f"{r['delivered']}/{r['expected']} |")
    plot(results, f"{system.label}: cost per delivered event and memory per stream "
                  f"({time.strftime('%Y-%m-%d')})", Path(args.out))
    print(f"\nplot: {args.out}")
    delete_run_keys()


if __name__ == "__main__":
    main()
