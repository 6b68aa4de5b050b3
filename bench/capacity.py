"""From measured costs to a fleet: web processes, cores and Redis shards for N streams.

    python -m bench.capacity docs/realistic.json            # the table in docs/benchmarks.md
    python -m bench.capacity docs/realistic.json --system fast-daphne

Reads :mod:`bench.realistic`'s ``--json`` output and takes, for one system,
the medians of its many-executions shape (the most executions; one stream
each is the costly case): server CPU per delivered event, server CPU and Redis
CPU per connect, RSS per stream, Redis CPU per sent event. Then for each
stream count and event rate, with the assumptions printed under the table:

* web cores = (deliveries/s × CPU per delivery + connects/s × CPU per connect)
  ÷ the utilisation a core is planned at; one process per core (each process
  is one event loop), and at least streams ÷ streams per process processes;
* Redis shards = (sends/s × Redis CPU per send + connects/s × Redis CPU per
  connect) ÷ the utilisation a Redis core is planned at (Redis runs commands
  on one core).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

STREAMS = (100_000, 1_000_000, 10_000_000)
#: Events per second per execution: a busy task (the benchmark's rate) and a
#: typical progress bar (one update every 10 s).
RATES = (1.0, 0.1)
#: Planned utilisation of a web core and of a Redis core (headroom for bursts
#: and reconnect storms).
WEB_UTILISATION = 0.6
REDIS_UTILISATION = 0.5
#: Streams per web process at most (file descriptors, connect storms after a restart).
STREAMS_PER_PROCESS = 10_000
#: Seconds a stream lives on average before it reconnects (page views, rotation).
STREAM_LIFETIME = 600.0
#: Streams per execution (1: every execution watched by one browser, the costly case).
STREAMS_PER_EXECUTION = 1


def costs(rows: list[dict[str, Any]], system: str) -> dict[str, float]:
    """The measured costs of ``system`` in its shape with the most executions."""
    ours = [r for r in rows if r["system"] == system and "error" not in r]
    if not ours:
        raise SystemExit(f"no measurement of {system}")
    row = max(ours, key=lambda r: r["executions"])
    return {key: float(row[key]) for key in (
        "server_us_per_event", "connect_us_per_stream", "rss_kb_per_stream",
        "redis_us_per_event", "redis_connect_us_per_stream", "executions", "per_execution")}


def plan(cost: dict[str, float], streams: int, rate: float) -> dict[str, float]:
    """Cores, processes, memory and Redis shards for ``streams`` at ``rate`` events/s each."""
    deliveries = streams * rate
    sends = streams / STREAMS_PER_EXECUTION * rate
    connects = streams / STREAM_LIFETIME
    web_cpu = (deliveries * cost["server_us_per_event"]
               + connects * cost["connect_us_per_stream"]) / 1e6
    cores = math.ceil(web_cpu / WEB_UTILISATION)
    processes = max(cores, math.ceil(streams / STREAMS_PER_PROCESS))
    redis_cpu = (sends * cost["redis_us_per_event"]
                 + connects * cost["redis_connect_us_per_stream"]) / 1e6
    return {"streams": streams, "rate": rate, "deliveries": deliveries, "sends": sends,
            "web_cores": cores, "processes": processes,
            "memory_gb": streams * cost["rss_kb_per_stream"] / 1024 / 1024,
            "redis_shards": max(1, math.ceil(redis_cpu / REDIS_UTILISATION))}


def table(cost: dict[str, float]) -> str:
    out = ["| streams | events/s per execution | deliveries/s | web cores (busy) | web processes "
           "| stream memory GB | Redis shards |", "|---|---|---|---|---|---|---|"]
    for streams in STREAMS:
        for rate in RATES:
            p = plan(cost, streams, rate)
            out.append(f"| {streams:,} | {rate:g} | {p['deliveries']:,.0f} | {p['web_cores']:,} | "
                       f"{p['processes']:,} | {p['memory_gb']:,.1f} | {p['redis_shards']:,} |")
    return "\n".join(out)


def assumptions(cost: dict[str, float], system: str) -> str:
    return "\n".join([
        f"Measured ({system}, {cost['executions']:,.0f} executions × {cost['per_execution']:.0f}): "
        f"{cost['server_us_per_event']:.0f} µs server CPU per delivered event, "
        f"{cost['connect_us_per_stream']:.0f} µs per connect, "
        f"{cost['rss_kb_per_stream']:.1f} KB per stream, "
        f"{cost['redis_us_per_event']:.0f} µs Redis CPU per sent event, "
        f"{cost['redis_connect_us_per_stream']:.0f} µs per connect.",
        f"Assumed: {STREAMS_PER_EXECUTION} stream per execution; a stream reconnects every "
        f"{STREAM_LIFETIME:.0f} s; cores planned at {WEB_UTILISATION:.0%} (web) and "
        f"{REDIS_UTILISATION:.0%} (Redis); at most {STREAMS_PER_PROCESS:,} streams per process; "
        f"executions spread evenly over Redis shards (each execution's log, membership "
        f"and channel on one shard)."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("json", help="bench.realistic --json output")
    parser.add_argument("--system", default="fast-uvicorn")
    args = parser.parse_args()
    from bench.realistic_report import summarise

    rows = summarise(json.loads(Path(args.json).read_text())["repeats"])
    cost = costs(rows, args.system)
    print(table(cost))
    print()
    print(assumptions(cost, args.system))


if __name__ == "__main__":
    main()
