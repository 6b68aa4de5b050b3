"""The fixed in-process workload whose instructions :mod:`bench.instructions` counts.

    python -m bench.instructions_workload --loop asyncio --layer memory   # natively, to see it run

One process, one event loop (``--loop``: the standard library's or uvloop), one
channel layer and store (``--layer memory``: channels' in-memory layer and the
memory store; ``--layer redis``: the pub/sub layer and the Redis store on
``REDIS_URL``). Each target, in this order — ``raw`` (the protocol and relay of
:mod:`bench.raw_server`, fed by an in-process queue or by Redis pub/sub),
``fast`` (:mod:`django_sse_exec.asgi`) and ``view`` (Django's ASGI handler) —
runs these phases, each ending with a callgrind dump named ``<target>/<phase>``:

* ``warm-up`` (not reported): 2 streams, 2 events, closed: imports, the hub's
  start, Lua scripts, every first time;
* ``connect``: ``--streams`` streams on as many executions (each connect joins
  a group), ``--connect-batch`` opened at once, until every preamble arrived
  (their requests, with the signed URLs a page would have minted, are made
  during the warm-up);
* ``event``: ``--rounds`` rounds of one event to each of those executions, one
  at a time, each awaited until its stream got it (the many-executions shape);
* ``fanout-connect``: ``--fanout`` streams on one execution (joined by the first);
* ``fanout``: ``--rounds`` events to that execution, each awaited until every
  stream got it (the paced fan-out shape);
* ``disconnect``: every stream goes at once, until the app has finished each.

A delivered event's count includes its send (``asend_sse_event``; for raw, the
message's encoding and a queue put or ``PUBLISH``), as in-process it cannot be
told apart. Nothing in the measured part may depend on the clock: timers that
would fire during it (keepalive, repair sweep, heartbeats, lease checks) are set
beyond its length; between two events to the same stream the workload sleeps
past the stream's coalescing window, so every event is written on its own (the
paced path) however slow the run; the memory store's sweep of expired logs
(every 30 s of wall time) is pushed out too; and the hub's lag limit is raised,
so a process descheduled between a send and its dispatch (likely under valgrind
on a loaded machine) does not take the catch-up path, which a server takes only
when its channel really lags. The last line printed is JSON: each phase's units
(connects, deliveries, disconnects), the statuses, and what the process runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAD = "x" * 64  # as in bench.run: a realistic progress event is ~100 bytes of JSON
#: Seconds the timers of the app are pushed out to (far beyond any run).
NEVER = 10_000_000.0
SETTINGS = {"KEEPALIVE": NEVER, "REPAIR_INTERVAL": NEVER, "HEARTBEAT": NEVER, "GROUP_REFRESH": NEVER,
            "LEASE_CHECK": NEVER, "RETRY_JITTER_MS": 0}
TARGETS = ("raw", "fast", "view")


def configure(layer: str, prefix: str) -> None:
    """Environment of the Django settings (``tests.settings``) for ``layer``; then set Django up."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ.pop("SSE_FAST_PATH", None)  # the Django application must stay the view's
    os.environ["TEST_LAYER"] = {"memory": "memory", "redis": "pubsub"}[layer]
    os.environ["TEST_KEY_PREFIX"] = prefix
    os.environ["SSE_EXEC_JSON"] = json.dumps(SETTINGS)
    sys.path.insert(0, str(ROOT))
    import example_project.asgi  # noqa: F401  (django.setup(), and the servers' GC settings)

    # As the benchmark's servers log (bench/settings.py): not a line per stream.
    logging.getLogger("django_sse_exec").setLevel(logging.WARNING)


class RawSide:
    """The raw reference: its protocol per stream, its relay fed by a queue or by Redis."""

    def __init__(self, layer: str, redis_url: str, prefix: str) -> None:
        from bench import raw_server

        self.raw = raw_server
        self.layer, self.redis_url, self.prefix = layer, redis_url, f"{prefix}_raw"
        self.bus: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.client: Any = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.layer == "memory":
            self.task = asyncio.ensure_future(self._relay())
            return
        import redis.asyncio as redis

        self.client = redis.Redis.from_url(self.redis_url)
        self.task = asyncio.ensure_future(self.raw.fan_out(self.redis_url, self.prefix))
        while not await self.client.publish(f"{self.prefix}.probe", b"0\nprobe\n{}"):
            await asyncio.sleep(0.05)  # until the relay's subscription is in place

    async def _relay(self) -> None:
        while True:
            execution_id, message = await self.bus.get()
            self.raw.relay(execution_id, message)

    def request(self, execution_id: str) -> bytes:
        """What a client sends to open a stream (made before the phase that opens it)."""
        from tests.http1 import request_bytes

        return request_bytes(f"http://127.0.0.1:8000/raw/{execution_id}")

    def open(self, request: bytes, tally: Any) -> Any:
        from bench.asgi_driver import RawStream

        return RawStream(self.raw.Connection(), request, tally)

    async def send(self, execution_id: str, n: int) -> None:
        data = json.dumps({"n": n, "pad": PAD}, separators=(",", ":"))
        message = f"{n}\ntick\n{data}".encode()
        if self.client is None:
            self.bus.put_nowait((execution_id, message))
        else:
            await self.client.publish(f"{self.prefix}.{execution_id}", message)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait([self.task])
        if self.client is not None:
            await self.client.aclose()


class AppSide:
    """This app through one ASGI entry point: the fast path, or Django's handler (the view)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def start(self) -> None:
        pass

    def request(self, execution_id: str) -> dict[str, Any]:
        """The request's scope; its URL is minted with the page, so before the phase that opens it."""
        from bench.asgi_driver import scope_for
        from django_sse_exec import stream_url

        return scope_for(stream_url(execution_id))

    def open(self, request: dict[str, Any], tally: Any) -> Any:
        from bench.asgi_driver import AsgiStream

        return AsgiStream(self.app, request, tally)

    async def send(self, execution_id: str, n: int) -> None:
        from django_sse_exec import asend_sse_event

        await asend_sse_event(execution_id, "tick", {"n": n, "pad": PAD})

    async def stop(self) -> None:
        pass


async def _open(side: Any, requests: list[Any], tally: Any, batch: int) -> list[Any]:
    streams: list[Any] = []
    for start in range(0, len(requests), batch):
        opened = [side.open(request, tally) for request in requests[start:start + batch]]
        await asyncio.gather(*(stream.opened for stream in opened))
        streams += opened
    return streams


async def run_target(name: str, side: Any, marks: Any, args: argparse.Namespace, first: bool) -> dict[str, Any]:
    """The phases of one target (see the module docstring); their units and the statuses."""
    from bench.asgi_driver import Tally
    from django_sse_exec.streams.live import COALESCE

    gap = COALESCE + 0.002
    run = f"i-{name}"  # the same names every run (the Redis layer's keys have a run's own prefix)
    tally, expected = Tally(), 0
    await side.start()
    ids = [f"{run}-{i}" for i in range(args.streams)]
    requests = [side.request(execution_id) for execution_id in ids]
    fan_requests = [side.request(f"{run}-fan") for _ in range(args.fanout)]
    warm = await _open(side, [side.request(f"{run}-warm")] * 2, tally, 2)
    for n in (1, 2):
        expected += len(warm)
        await side.send(f"{run}-warm", n)
        await tally.reach(expected)
        await asyncio.sleep(gap)
    for stream in warm:
        stream.disconnect()
    await asyncio.gather(*(stream.closed() for stream in warm))
    if first:
        marks.start()
    else:
        marks.dump(f"{name}/warm-up")

    streams = await _open(side, requests, tally, args.connect_batch)
    marks.dump(f"{name}/connect")
    for n in range(1, args.rounds + 1):
        for execution_id in ids:
            expected += 1
            await side.send(execution_id, n)
            await tally.reach(expected)
        await asyncio.sleep(gap)
    marks.dump(f"{name}/event")

    fan = await _open(side, fan_requests, tally, args.connect_batch)
    marks.dump(f"{name}/fanout-connect")
    for n in range(1, args.rounds + 1):
        await asyncio.sleep(gap)
        expected += len(fan)
        await side.send(f"{run}-fan", n)
        await tally.reach(expected)
    marks.dump(f"{name}/fanout")

    everyone = streams + fan
    for stream in everyone:
        stream.disconnect()
    await asyncio.gather(*(stream.closed() for stream in everyone))
    marks.dump(f"{name}/disconnect")
    await side.stop()
    return {"units": {f"{name}/connect": len(streams), f"{name}/event": len(ids) * args.rounds,
                      f"{name}/fanout-connect": len(fan), f"{name}/fanout": len(fan) * args.rounds,
                      f"{name}/disconnect": len(everyone)},
            "statuses": dict(Counter(str(s.status) for s in everyone)), "events": tally.events}


async def workload(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """Every target of ``args`` in turn, on this loop; then delete the run's Redis keys."""
    from bench import deps
    from bench.callgrind import Marks
    from django_sse_exec.hub import fanout
    from django_sse_exec.store.memory import MemoryStore

    fanout.LAG_LIMIT = float("inf")  # see the module docstring
    MemoryStore.SWEEP_EVERY = NEVER  # its sweep of expired logs runs by the clock (every 30 s)
    loop = asyncio.get_running_loop()
    loop.call_later(args.limit, _abort, args.limit)
    marks = Marks()
    result: dict[str, Any] = {"runtime": deps.describe(), "units": {}, "targets": {}}
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    for index, name in enumerate(args.targets.split(",")):
        if name == "raw":
            side: Any = RawSide(args.layer, redis_url, prefix)
        else:
            from django_sse_exec.asgi import wrap
            from example_project.asgi import application

            side = AppSide(wrap(application) if name == "fast" else application)
        done = await run_target(name, side, marks, args, first=index == 0)
        result["units"].update(done.pop("units"))
        result["targets"][name] = done
    if args.layer == "redis":
        result["deleted_keys"] = await _delete_keys(redis_url, prefix)
    return result


async def _delete_keys(redis_url: str, prefix: str) -> int:
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    deleted = 0
    for pattern in (f"{prefix}*", f"asgi_{prefix}*"):
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        if keys:
            deleted += await client.delete(*keys)
    await client.aclose()
    return deleted


def _abort(limit: float) -> None:
    print(f"the workload did not finish within {limit:.0f} s (an event lost?)", file=sys.stderr, flush=True)
    os._exit(3)


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    out.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    out.add_argument("--layer", choices=("memory", "redis"), default="memory")
    out.add_argument("--targets", default=",".join(TARGETS))
    out.add_argument("--streams", type=int, default=50, help="streams of the connect and event phases")
    out.add_argument("--fanout", type=int, default=50, help="streams on the one execution of the fan-out")
    out.add_argument("--rounds", type=int, default=4, help="events per stream in each event phase")
    out.add_argument("--connect-batch", type=int, default=10, help="connects started at once")
    out.add_argument("--limit", type=float, default=600.0, help="seconds before the run gives up")
    return out


def main() -> None:
    args = parser().parse_args()
    # Names are hashed: keep them the same run after run where nothing else shares them.
    base = os.environ.get("TEST_KEY_PREFIX", "sse")
    prefix = "sse_instr" if args.layer == "memory" else f"{base}_instr_{os.getpid():08d}"
    configure(args.layer, prefix)
    from bench import deps

    result = deps.run(workload(args, prefix), args.loop)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
