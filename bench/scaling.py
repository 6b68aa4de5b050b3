"""How cost grows: connections 100 → 10,000 on one execution, executions 1 → 10,000.

    python -m bench.scaling                       # fast path on uvicorn, writes docs/scaling.png
    python -m bench.scaling --system fast-daphne --quick
    python -m bench.scaling --replot --realistic docs/realistic.json   # redraw, no measuring

The measured series are saved next to the plot (``docs/scaling.json``) so that
``--replot`` can redraw it; ``--realistic`` adds the realistic scenario
(:mod:`bench.realistic`'s ``--json`` output) as a third column: server CPU per
delivered event and RSS per stream of every system, raw included, per shape.

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
from bench.run import (
    ROOT,
    SYSTEMS,
    System,
    cpu_seconds,
    delete_run_keys,
    rss,
    settle,
    system_named,
    wait_streams,
    warm_up,
)

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


def plot_realistic(axes: Any, rows: list[dict[str, Any]]) -> None:
    """The realistic scenario's medians: one bar per system and shape, per metric."""
    shapes = sorted({(r["executions"], r["per_execution"]) for r in rows}, reverse=True)
    systems = list(dict.fromkeys(r["system"] for r in rows))
    width = 0.8 / max(len(shapes), 1)
    for row, (metric, ylabel) in enumerate([("server_us_per_event", "server CPU µs per delivered event"),
                                            ("rss_kb_per_stream", "server RSS KB per stream")]):
        ax = axes[row]
        for i, shape in enumerate(shapes):
            values = [next((r.get(metric, 0.0) for r in rows if r["system"] == s
                            and (r["executions"], r["per_execution"]) == shape), 0.0) for s in systems]
            xs = [j + (i - (len(shapes) - 1) / 2) * width for j in range(len(systems))]
            bars = ax.bar(xs, values, width, label=f"{shape[0]:,} executions × {shape[1]}")
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(range(len(systems)), systems, rotation=20, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("realistic scenario: 1 event/s per execution, 4 sync senders")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)


def plot(results: dict[str, list[dict[str, Any]]], title: str, out: Path,
         realistic: list[dict[str, Any]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 3 if realistic else 2
    fig, axes = plt.subplots(2, columns, figsize=(5.5 * columns, 7.5))
    if realistic:
        plot_realistic([axes[0][2], axes[1][2]], realistic)
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
    parser.add_argument("--system", default="fast-uvicorn",
                        choices=sorted([*SYSTEMS, *(name + "+fast" for name in SYSTEMS)]),
                        help="<system>+fast: with the fast dependency set (bench/deps.py)")
    parser.add_argument("--quick", action="store_true", help="small sizes (checks the script)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "scaling.png"))
    parser.add_argument("--replot", action="store_true",
                        help="redraw from the saved series (the plot's .json) without measuring")
    parser.add_argument("--realistic", metavar="JSON",
                        help="add the realistic scenario from bench.realistic --json output")
    args = parser.parse_args()
    saved = Path(args.out).with_suffix(".json")
    realistic = None
    if args.realistic and Path(args.realistic).exists():
        from bench.realistic_report import summarise

        realistic = summarise(json.loads(Path(args.realistic).read_text())["repeats"])
    if args.replot:
        data = json.loads(saved.read_text())
        plot(data["results"], data["title"], Path(args.out), realistic)
        print(f"plot: {args.out}")
        return
    system = system_named(args.system)
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
    title = (f"{system.label}: cost per delivered event and memory per stream "
             f"({time.strftime('%Y-%m-%d')})")
    saved.write_text(json.dumps({"title": title, "results": results}, indent=1))
    plot(results, title, Path(args.out), realistic)
    print(f"\nplot: {args.out}")
    delete_run_keys()


if __name__ == "__main__":
    main()
