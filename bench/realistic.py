"""The realistic scenario: many executions with few streams each, Celery-like senders.

    python -m bench.realistic              # 10,000 × 1 and 2,000 × 3 streams, 30 s, 5 systems
    python -m bench.realistic --quick      # 1,000 × 1 and 300 × 3, 8 s: about three minutes
    python -m bench.realistic --shapes 2000x1 --seconds 10 --systems raw,fast-uvicorn --repeat 3
    python -m bench.realistic --deps fast  # only with the fast dependency set (default: both)

Production looks like thousands of executions running at once, each watched by
zero to three browsers. For each shape (executions × streams per execution)
and each system (the raw asyncio server of :mod:`bench.raw_server`, the fast
path and the view under uvicorn and daphne), on a fresh server process:

1. every stream connects (2,000 at a time) and the server's RSS growth per
   stream is taken;
2. four sender processes (:mod:`bench.senders`, started once per run) send one
   event per second to each execution for ``--seconds`` seconds with the sync
   ``send_sse_event`` (the raw server: a plain ``PUBLISH``);
3. once every event arrived (or nothing came for 5 s): latency p50/p99 (send
   time in the payload to arrival), lost = expected − received, server CPU per
   delivered event, and Redis commands (and Redis CPU) per sent event from
   ``INFO commandstats`` taken before and after.

Everything runs on a private ``redis-server`` started on a free port for the
run, so nothing else moves its command counts; it is stopped at the end.
Ratios are against the raw server measured in the same repeat; with
``--repeat N`` every figure is the median of the N repeats (ratios are taken
within each repeat first).

As in :mod:`bench.run`, every system runs without and with the fast dependency
set (``--deps``; ``<system>+fast`` is compared with ``raw+fast``), and so do
the sender processes: a set's systems are fed by senders with the same set
(hiredis for their Redis replies).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import deps  # noqa: E402
from tests.helpers import PrivateRedis  # noqa: E402

SYSTEM_NAMES = ("raw", "fast-uvicorn", "fast-daphne", "view-uvicorn", "view-daphne")
SENDERS = 4
#: Redis commands of the driver itself (left out of the per-event counts).
DRIVER_COMMANDS = {"info", "config|resetstat", "config", "ping", "client|setinfo", "hello"}


def parse_shape(text: str) -> tuple[int, int]:
    """``"10000x1"`` → (10000 executions, 1 stream each)."""
    executions, _, streams = text.lower().partition("x")
    return int(executions), int(streams or 1)


def command_stats(client: Any) -> dict[str, tuple[int, int]]:
    """``INFO commandstats`` as {command: (calls, usec)}, without the driver's own commands.

    Commands that scripts run are counted too (an ``EVALSHA`` is one round trip
    but 1 + its commands here): this is the work Redis does per event.
    """
    stats = client.info("commandstats")
    out = {}
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_")
        if name not in DRIVER_COMMANDS:
            out[name] = (int(value["calls"]), int(value["usec"]))
    return out


def stats_delta(before: dict[str, tuple[int, int]],
                after: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    delta = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls - c0:
            delta[name] = (calls - c0, usec - u0)
    return delta


class Senders:
    """The run's sender processes (see :mod:`bench.senders`)."""

    def __init__(self, count: int, env: dict[str, str]) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-m", "bench.senders"], cwd=ROOT, env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                      for _ in range(count)]
        for proc in self.procs:
            self._answer(proc)

    @staticmethod
    def _answer(proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("a sender process exited")
        return json.loads(line)

    async def send(self, mode: str, prefix: str, executions: list[str], seconds: int,
                   t0: float) -> list[dict[str, Any]]:
        """Each process sends to its share of ``executions`` (round robin); their reports."""
        for index, proc in enumerate(self.procs):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"mode": mode, "prefix": prefix, "t0": t0,
                                         "seconds": seconds,
                                         "executions": executions[index::len(self.procs)]}) + "\n")
            proc.stdin.flush()
        return await asyncio.gather(*(asyncio.to_thread(self._answer, p) for p in self.procs))

    def stop(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def measure(base: Any, system: Any, senders: Senders, redis: PrivateRedis,
                  executions: int, per_execution: int, seconds: int,
                  profile: str | None = None, trace: bool = False) -> dict[str, Any]:
    """One shape on one fresh server: connect, send for ``seconds``, collect the figures.

    With ``profile`` (a directory) the server is sampled with py-spy while the
    senders run (``<system>-<executions>x<streams>.txt``, summarised on stderr).
    With ``trace`` the server times each hop of the events (:mod:`bench.trace`).
    """
    from bench.client import Sink, close_all, open_streams
    from bench.text import pct

    trace_path = Path(tempfile.mkdtemp(prefix="bench-trace-")) / "hops.json" if trace else None
    if trace_path is not None:
        os.environ["BENCH_TRACE"] = str(trace_path)  # the server inherits it
    try:
        system.start()
    finally:
        os.environ.pop("BENCH_TRACE", None)
    try:
        await base.warm_up(system)
        run = uuid.uuid4().hex[:8]
        ids = [f"real-{run}-{i}" for i in range(executions)]
        urls = [system.url(e) for e in ids for _ in range(per_execution)]
        gc.collect()
        rss_before = base.rss(system.pid)
        assert redis.proc is not None
        connect_cpu = base.cpu_seconds(system.pid), base.cpu_seconds(redis.proc.pid)
        sink = Sink()
        streams, connect_s = await open_streams(urls, sink, concurrency=2000, timeout=600)
        ok = sum(1 for s in streams if s.status == 200 and not s.closed)
        await base.wait_streams(system, ok, timeout=120)
        connect_cpu = (base.cpu_seconds(system.pid) - connect_cpu[0],
                       base.cpu_seconds(redis.proc.pid) - connect_cpu[1])
        await asyncio.sleep(1.0)
        rss_after = base.rss(system.pid)
        redis_client = redis.client()
        stats_before = command_stats(redis_client)
        cpu_before = base.cpu_seconds(system.pid)
        redis_cpu_before = base.cpu_seconds(redis.proc.pid)
        profiler = None
        if profile:
            profiler = base.start_profiler(system, profile)
        t0 = time.time() + 0.5
        reports = await senders.send("raw" if system.flavour == "raw" else "app",
                                     f"{base.PREFIX}_raw", ids, seconds, t0)
        if profiler is not None:
            base.stop_profiler(profiler)
            path = Path(profile or "") / f"{system.name}-{executions}x{per_execution}.txt"
            Path(profile or "", f"{system.name}.txt").rename(path)
            print(base.summarise_profile(str(path)), file=sys.stderr, flush=True)
        sent = sum(r["sent"] for r in reports)
        await base.settle(sink, sent * per_execution, quiet=5.0, limit=120.0)
        cpu = base.cpu_seconds(system.pid) - cpu_before
        redis_cpu = base.cpu_seconds(redis.proc.pid) - redis_cpu_before
        delta = stats_delta(stats_before, command_stats(redis_client))
        lost = sent * per_execution - sink.events
        if trace_path is not None:
            await asyncio.sleep(2.5)  # the trace is written every 2 s
        close_all(streams)
        await asyncio.sleep(1.0)
    finally:
        system.stop()
    calls = sum(c for c, _ in delta.values())
    hops = json.loads(trace_path.read_text()) if trace_path and trace_path.exists() else {}
    if trace_path is not None:
        shutil.rmtree(trace_path.parent, ignore_errors=True)
    return {
        **{f"hop_{key}": value for key, value in hops.items() if isinstance(value, float)},
        "system": system.name, "label": system.label,
        "executions": executions, "per_execution": per_execution, "streams": len(urls),
        "connected": ok, "connect_s": connect_s,
        "rss_kb_per_stream": (rss_after - rss_before) / max(ok, 1) / 1024,
        "connect_us_per_stream": connect_cpu[0] / max(ok, 1) * 1e6,
        "redis_connect_us_per_stream": connect_cpu[1] / max(ok, 1) * 1e6,
        "sent": sent, "send_rate": sent / max(max(r["seconds"] for r in reports), 1e-9),
        "worst_late_s": max(r["worst_late_s"] for r in reports),
        "delivered": sink.events, "lost": lost,
        "ids_in_order": all(s.ids_ok for s in streams if s.status == 200),
        "p50_ms": pct(sink.latencies, 0.50) * 1000,
        "p99_ms": pct(sink.latencies, 0.99) * 1000,
        "server_us_per_event": cpu / max(sink.events, 1) * 1e6,
        "redis_calls_per_event": calls / max(sent, 1),
        "redis_us_per_event": redis_cpu / max(sent, 1) * 1e6,
        "redis_commands": {name: round(c / max(sent, 1), 3) for name, (c, _) in
                           sorted(delta.items(), key=lambda item: -item[1][0])},
    }


async def run_all(base: Any, senders: dict[bool, Senders], redis: PrivateRedis,
                  shapes: list[tuple[int, int]], systems: list[str], seconds: int, repeat: int,
                  profile: str | None = None, trace: bool = False) -> list[list[dict[str, Any]]]:
    """Every shape on every system, ``repeat`` times (in one event loop); ``senders`` by set."""
    repeats = []
    for run in range(repeat):
        results = []
        for executions, per_execution in shapes:
            for name in systems:
                print(f"== run {run + 1}/{repeat}: {executions}x{per_execution} {name}",
                      file=sys.stderr, flush=True)
                system = base.system_named(name)
                try:
                    result = await measure(base, system, senders[system.fast], redis,
                                           executions, per_execution, seconds, profile, trace)
                except Exception as exc:  # one failure must not lose the rest
                    result = {"system": name, "label": system.label,
                              "executions": executions, "per_execution": per_execution,
                              "error": f"{type(exc).__name__}: {exc}"}
                print(json.dumps(result), file=sys.stderr, flush=True)
                results.append(result)
        repeats.append(results)
    return repeats


def print_report(rows: list[dict[str, Any]], seconds: int, runs: int) -> None:
    from bench.realistic_report import hops, table, targets

    print(f"\nRealistic scenario: {SENDERS} sender processes (sync send_sse_event), 1 event/s per "
          f"execution for {seconds} s; up to {runs} run(s), medians; private Redis; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(table(rows))
    print("\nTargets (ratios against raw in the same run):\n")
    print(targets(rows))
    if any("hop_receive_p99_ms" in row for row in rows):
        print("\nWhere the time goes (medians; --trace):\n")
        print(hops(rows))


def main() -> None:
    from bench.realistic_report import summarise

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1000x1 and 300x3 for 8 s (checks the bench in about three minutes)")
    parser.add_argument("--shapes", help="executions x streams each, comma-separated "
                                         "(default 10000x1,2000x3)")
    parser.add_argument("--seconds", type=int, help="seconds of sending (default 30)")
    parser.add_argument("--systems", default=",".join(SYSTEM_NAMES))
    parser.add_argument("--repeat", type=int, default=1, help="runs; figures are medians")
    parser.add_argument("--deps", choices=("stdlib", "fast", "both"), default="both",
                        help="without the fast dependency set, with it, or both (bench/deps.py)")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--report", nargs="+", metavar="JSON",
                        help="print the table of saved runs (their repeats pooled), measure nothing")
    parser.add_argument("--profile", metavar="DIR",
                        help="sample each server with py-spy while events are sent; summarise")
    parser.add_argument("--trace", action="store_true",
                        help="time each hop of the events in the app's servers (bench/trace.py)")
    args = parser.parse_args()
    if args.report:
        runs = [json.loads(Path(path).read_text()) for path in args.report]
        print_report(summarise([r for run in runs for r in run["repeats"]]),
                     runs[0]["seconds"], sum(len(run["repeats"]) for run in runs))
        return
    if args.deps != "stdlib" and deps.missing():
        parser.error(f"the fast set is not installed ({', '.join(deps.missing())}): "
                     "pip install -e '.[fast]', or --deps stdlib")
    shapes = [parse_shape(s) for s in (args.shapes or ("1000x1,300x3" if args.quick
                                                      else "10000x1,2000x3")).split(",")]
    seconds = args.seconds or (8 if args.quick else 30)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # servers inherit it

    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        redis = PrivateRedis(Path(directory)).start()
        try:
            os.environ["REDIS_URL"] = redis.url
            from bench import run as base  # configures Django for the benchmark, on that Redis

            env = {**os.environ, **base.SERVER_ENV, "PYTHONPATH": str(ROOT)}
            systems = base.with_deps(args.systems.split(","), args.deps)
            senders = {fast: Senders(SENDERS, deps.env_for(fast, env))
                       for fast in sorted({n.endswith(deps.SUFFIX) for n in systems})}
            try:
                repeats = asyncio.run(run_all(base, senders, redis, shapes, systems,
                                              seconds, args.repeat, args.profile, args.trace))
            finally:
                for pool in senders.values():
                    pool.stop()
        finally:
            redis.stop()
    print_report(summarise(repeats), seconds, args.repeat)
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": seconds, "repeats": repeats}, indent=1))


if __name__ == "__main__":
    main()
