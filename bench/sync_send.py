"""Measure sync ``send_sse_event`` on Redis against a plain redis-py PUBLISH loop.

For each channels_redis layer (core and pub/sub) a fresh process configures
Django, then alternates rounds of raw ``PUBLISH`` and of ``send_sse_event`` in
the same run (so both see the same machine load) and counts Redis clients
before the first send, after a warm-up and after all sends (total, and those
whose socket belongs to this process). A consumer process joined to the
execution's group, as a web process's hub is, checks that every event arrived
in order (``got``). ``drain s`` is how long the background
publisher needed after the last send returned (0 when the store's script
delivers); ``loop/s`` is the rate of ``asend_sse_event`` run on the event-loop
thread through ``run_sync`` (the hop sync calls take without the Redis fast
path), for comparison. Usage::

    .venv/bin/python bench/sync_send.py -n 100000            # both layers
    .venv/bin/python bench/sync_send.py -n 20000 --layer pubsub --threads 4

Needs a Redis at ``--redis-url`` (default ``$REDIS_URL`` or
redis://127.0.0.1:6379/0); keys use a unique prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    "redis": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def configure(layer: str, redis_url: str, prefix: str) -> None:
    import django
    from django.conf import settings

    config = {"hosts": [{"address": redis_url, "socket_timeout": 30, "max_connections": 1000}],
              "prefix": f"asgi_{prefix}"}
    if layer == "redis":
        config["capacity"] = 100_000
    settings.configure(
        INSTALLED_APPS=["channels", "django_sse_exec"],
        CHANNEL_LAYERS={"default": {"BACKEND": LAYERS[layer], "CONFIG": config}},
        SSE_EXEC={"KEY_PREFIX": prefix},
    )
    django.setup()


def redis_clients(client: object) -> tuple[int, int]:
    """(all clients of the Redis server, clients connected from this process)."""
    import psutil

    client.ping()  # type: ignore[attr-defined]  # our own connection is listed too
    ours = {c.laddr.port for c in psutil.Process().net_connections("tcp") if c.raddr}
    listed = client.client_list()  # type: ignore[attr-defined]
    mine = sum(1 for c in listed if int(c["addr"].rsplit(":", 1)[1]) in ours)
    return len(listed), mine


def run_threads(threads: int, count: int, func: object) -> float:
    """Call ``func(i)`` ``count`` times split over ``threads`` threads; return seconds."""
    share = count // threads

    def work() -> None:
        for i in range(share):
            func(i)  # type: ignore[operator]

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def listener(layer: str, redis_url: str, prefix: str, execution: str) -> dict:
    """A consumer of the execution's group on the layer, as a web process's hub is:
    counts what it receives until ``stream-closed``. It also reads the raw
    ``PUBLISH`` channel, so both loops being compared have a consumer."""
    import asyncio

    import redis

    configure(layer, redis_url, prefix)
    from django_sse_exec.layer.access import get_layer
    from django_sse_exec.layer.names import group_name

    raw = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    raw.subscribe(f"{prefix}.raw")
    threading.Thread(target=lambda: [None for _ in raw.listen()], daemon=True).start()

    async def run() -> dict:
        channel_layer = get_layer()
        channel = await channel_layer.new_channel()
        await channel_layer.group_add(group_name(execution), channel)
        print("ready", flush=True)
        ids = []
        while True:
            message = await channel_layer.receive(channel)
            ids.append(message["id"])
            if message["event"] == "stream-closed":
                return {"ids": ids}

    return asyncio.run(run())


def child(layer: str, count: int, threads: int, rounds: int, redis_url: str) -> dict:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    configure(layer, redis_url, prefix)
    import redis

    from django_sse_exec import asend_sse_event, close_sse_connections, send_sse_event
    from django_sse_exec.runtime.sync import run_sync
    from django_sse_exec.sending.publisher import publisher

    raw = redis.Redis.from_url(redis_url)
    payload = json.dumps({"taskId": "task-1", "progress": 1, "total": 5}).encode()
    execution = f"bench-{uuid.uuid4().hex[:8]}"
    consumer = subprocess.Popen(
        [sys.executable, __file__, "--listen", "--layer", layer, "--redis-url", redis_url,
         "--prefix", prefix, "--execution", execution],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    assert consumer.stdout is not None and consumer.stdout.readline().strip() == "ready"
    before = redis_clients(raw)
    warm_up = 200 * threads  # with as many threads: the connections they need, scripts, caches
    run_threads(threads, warm_up, lambda i: send_sse_event(execution, "tick", {"i": i}))
    run_threads(threads, warm_up, lambda i: raw.publish(f"{prefix}.raw", payload))
    publisher().flush(60)
    warm = redis_clients(raw)
    raw_time = send_time = 0.0
    per_round = count // rounds
    for _ in range(rounds):
        raw_time += run_threads(threads, per_round,
                                lambda i: raw.publish(f"{prefix}.raw", payload))
        send_time += run_threads(threads, per_round, lambda i: send_sse_event(
            execution, "task-start", {"taskId": f"task-{i}", "progress": i, "total": count}))
    started = time.perf_counter()
    publisher().flush(600)
    drain = time.perf_counter() - started
    after = redis_clients(raw)
    # For comparison: the same sends through the event-loop thread (the path
    # sync calls take when the store or layer is not Redis).
    looped = count // 10
    loop_time = run_threads(threads, looped, lambda i: run_sync(
        "send_sse_event", asend_sse_event, execution, "task-start", {"progress": i}))
    last_id = close_sse_connections(execution)
    received = json.loads(consumer.communicate(timeout=600)[0].strip().splitlines()[-1])["ids"]
    keys = list(raw.scan_iter(f"{prefix}:*"))
    if keys:
        raw.delete(*keys)
    sent = per_round * rounds
    return {
        "layer": layer, "sends": sent, "threads": threads,
        "raw_rate": sent / raw_time, "send_rate": sent / send_time,
        "ratio": raw_time / send_time, "drain_s": drain,
        "loop_rate": looped // threads * threads / loop_time,
        "ids_ok": last_id == warm_up + sent + looped // threads * threads + 1,
        # Every id exactly once; the fast path's in order (the comparison sends
        # through the loop may be reordered by the layer when threads overlap).
        "delivered": sorted(received) == list(range(1, last_id + 1)) and (
            lambda fast: fast == sorted(fast))([i for i in received if i <= warm_up + sent]),
        "clients_before": before, "clients_warm": warm, "clients_after": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=100_000)
    parser.add_argument("--layer", choices=[*LAYERS, "both"], default="both")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--listen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--execution", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.listen:
        print(json.dumps(listener(args.layer, args.redis_url, args.prefix, args.execution)))
        return
    if args.child:
        print(json.dumps(child(args.layer, args.count, args.threads, args.rounds,
                               args.redis_url)))
        return
    results = []
    for layer in LAYERS if args.layer == "both" else [args.layer]:
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--layer", layer, "-n", str(args.count),
             "--threads", str(args.threads), "--rounds", str(args.rounds),
             "--redis-url", args.redis_url],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'layer':7} {'sends':>7} {'thr':>3} {'PUBLISH/s':>10} {'send/s':>8} {'ratio':>6} "
          f"{'drain s':>7} {'loop/s':>7} {'ids':>4} {'got':>4} "
          f"{'clients all/ours: before  warm  after':>40}")
    for r in results:
        clients = "  ".join(f"{a}/{o}" for a, o in
                            (r["clients_before"], r["clients_warm"], r["clients_after"]))
        print(f"{r['layer']:7} {r['sends']:7d} {r['threads']:3d} {r['raw_rate']:10.0f} "
              f"{r['send_rate']:8.0f} {r['ratio']:6.2f} {r['drain_s']:7.2f} {r['loop_rate']:7.0f} "
              f"{'ok' if r['ids_ok'] else 'BAD':>4} {'all' if r['delivered'] else 'BAD':>4} "
              f"{clients:>40}")


if __name__ == "__main__":
    main()
