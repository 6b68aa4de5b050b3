"""Sustained throughput into ONE execution: sync senders at full speed, 1 or 100 streams.

A Celery task that reports per row of an import sends as fast as Redis lets it.
This measures, per channel layer and server, whether every stream still gets
every event once and in order with no ``stream-reset`` (the hub and streams
must catch up from the log in bulk when the channel is behind), the sustained
send rate, and delivery latency (send time in the event's data, arrival time
at the client; same host clock)::

    python -m bench.throughput                       # the full matrix, a table
    python -m bench.throughput --events 5000 --layers redis --servers daphne

``run_throughput`` is also what ``tests/test_throughput.py`` runs, smaller.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from tests.helpers import wait_until
from tests.loadclient import Swarm, tally
from tests.server import Server
from tests.workers import delete_keys, redis_env, run_sender

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

SENDER = """
import threading, time
EXECUTION, EVENTS, THREADS, PAD = {execution!r}, {events}, {threads}, "x" * 200
ids = []
def work(t):
    mine = []
    for n in range(EVENTS // THREADS):
        mine.append(sse.send_sse_event(EXECUTION, "row", {{"t": time.time(), "n": n, "pad": PAD}}))
    ids.extend(mine)
sse.send_sse_event(EXECUTION, "warm-up", {{}})  # connections and the probe, before the clock
started = time.time()
threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
for thread in threads: thread.start()
for thread in threads: thread.join()
seconds = time.time() - started
emit({{"ids": sorted(ids), "seconds": seconds, "closed": sse.close_sse_connections(EXECUTION)}})
"""


class TimedEvents(list):  # type: ignore[type-arg]
    """A client's event list that also records when each event arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[float] = []

    def append(self, item: Any) -> None:
        super().append(item)
        self.arrived.append(time.time())


async def run_throughput(layer: str, server: str, streams: int, threads: int, events: int,
                         entry_point: str = "view", redis_url: str = REDIS_URL,
                         **sse_exec: Any) -> dict[str, Any]:
    """One run; returns the figures (``lost``, ``resets``, ``sends_per_s``, ``p99_ms`` ...).

    ``sse_exec`` overrides the server's settings (defaults otherwise, but KEEPALIVE).
    """
    env = redis_env(redis_url, layer)
    if entry_point == "fast":
        env["SSE_FAST_PATH"] = "1"
    execution = f"tp-{os.getpid()}-{time.monotonic_ns()}"
    srv = Server(server, env=env, sse_exec={"KEEPALIVE": 60, **sse_exec}).start()
    try:
        from django_sse_exec import stream_url

        url = srv.base_url + stream_url(execution)
        async with Swarm([url] * streams, connect_timeout=60, max_retry_ms=500) as swarm:
            clients = swarm.clients
            for client in clients:  # (connected, nothing sent yet)
                client.events = TimedEvents()
            sent = await asyncio.to_thread(run_sender, env, SENDER.format(
                execution=execution, events=events, threads=threads), 600)
            await wait_until(lambda: all(c.finished for c in clients), 120, interval=0.2,
                             what="every stream finished")
        expected = sent["ids"] + [sent["closed"]]
        counts = tally(clients, expected)
        latencies = []
        for client in clients:
            for event, arrived in zip(client.events, client.events.arrived):
                if event.event == "row":
                    latencies.append(arrived - json.loads(event.data)["t"])
        latencies.sort()
        return {
            "layer": layer, "server": server, "entry": entry_point, "streams": streams,
            "threads": threads, "events": len(sent["ids"]),
            "sends_per_s": len(sent["ids"]) / sent["seconds"],
            "lost": counts.lost, "duplicated": counts.duplicated,
            "out_of_order": counts.out_of_order,
            "resets": sum(1 for c in clients for e in c.events if e.event == "stream-reset"),
            "reconnects": sum(len(c.connects) - 1 for c in clients),
            "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        }
    finally:
        srv.stop()
        delete_keys(redis_url, env["TEST_KEY_PREFIX"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--layers", default="redis,pubsub")
    parser.add_argument("--servers", default="daphne,uvicorn")
    parser.add_argument("--streams", default="1,100")
    parser.add_argument("--threads", default="1,4")
    args = parser.parse_args()
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    print("layer   server   streams threads events sends/s  lost dup ooo resets p50ms  p99ms")
    for layer in args.layers.split(","):
        for server in args.servers.split(","):
            for streams in map(int, args.streams.split(",")):
                for threads in map(int, args.threads.split(",")):
                    r = asyncio.run(run_throughput(layer, server, streams, threads, args.events))
                    print(f"{layer:7} {server:8} {streams:7} {threads:7} {r['events']:6} "
                          f"{r['sends_per_s']:7.0f} {r['lost']:5} {r['duplicated']:3} "
                          f"{r['out_of_order']:3} {r['resets']:6} {r['p50_ms']:6.1f} "
                          f"{r['p99_ms']:6.1f}", flush=True)


if __name__ == "__main__":
    main()
