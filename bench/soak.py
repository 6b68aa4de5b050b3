"""The soak run: the production shape for half an hour, a restart of each server, and slopes.

    python -m bench.soak                     # 30 minutes (SOAK_MINUTES in `make soak`)
    python -m bench.soak --minutes 3 --sample-seconds 15 --warmup-minutes 1

One daphne process serves streams through the fast path (``SSE_FAST_PATH=1``) from a
private ``redis-server`` on a free port (never the shared one), on the pub/sub
channel layer the Redis guide recommends. Sender processes (:mod:`bench.soak_sender`)
play Celery workers: ``--executions`` run at once, each sending one event per second
with the sync ``send_sse_event`` and ending after 30–120 events with
``close_sse_connections``, its slot then starting the next one. Each execution is
followed from its start by one to three clients that behave like ``EventSource``
(:class:`tests.loadclient.StreamClient`: reconnect after ``retry:`` with
``Last-Event-ID``). At fixed points (a third and two thirds of the run by default) the
web process is stopped (TERM) and started again, then Redis is shut down with its data
saved, kept down for ``--redis-down`` seconds and started again.

When an execution has ended and its clients with it, each client is judged against
the sender's record by :mod:`tests.chaos_check` (every confirmed event exactly once,
in order; a send that failed while Redis was down may appear once or not at all); then
it is forgotten, so the run's own memory stays flat too. Every ``--sample-seconds`` the
run samples the web process's RSS and open files (``/proc/PID/fd``), its hub's streams,
groups and tasks, Redis's key count and ``used_memory``. At the end it prints the
samples, the slopes after warm-up with their verdicts (:mod:`bench.soak_report` says
how "flat" is decided), the lost events and the executions that did not end, and
writes everything to ``soak.json`` in the run directory. Exit status 1 unless every
slope is flat, nothing was lost and every execution ended.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import soak_report  # noqa: E402
from bench.soak_follow import Follower  # noqa: E402
from bench.soak_sender import parse_range  # noqa: E402
from tests.chaos import Web  # noqa: E402
from tests.chaos_report import Faults  # noqa: E402
from tests.helpers import PrivateRedis, wait_until  # noqa: E402
from tests.workers import redis_env  # noqa: E402


@dataclass
class SoakConfig:
    """How long, how big, and which faults when."""

    minutes: float = 30.0
    executions: int = 200
    senders: int = 4
    streams: tuple[int, int] = (1, 3)
    events: tuple[int, int] = (30, 120)
    sample_seconds: float = 60.0
    #: Minutes from the start left out of the web process's slopes.
    warmup_minutes: float = 3.0
    #: Same for Redis's (None: CLOSED_TTL + the longest execution + 1 minute).
    redis_warmup_minutes: Optional[float] = None
    #: Minutes after a restart whose samples the slope leaves out (None: the warm-up).
    settle_minutes: Optional[float] = None
    #: (fraction of the run, "web" | "redis").
    faults: tuple[tuple[float, str], ...] = ((1 / 3, "web"), (2 / 3, "redis"))
    redis_down: float = 5.0
    #: Closed logs are kept this long; the key count levels off after it (default 1 h).
    closed_ttl: int = 300
    seed: int = field(default_factory=lambda: random.randrange(1 << 30))

    @property
    def redis_warmup(self) -> float:
        """Minutes left out of Redis's slopes (see :attr:`redis_warmup_minutes`)."""
        if self.redis_warmup_minutes is not None:
            return self.redis_warmup_minutes
        return self.closed_ttl / 60 + self.events[1] / 60 + 1


class Soak:
    """One run: start everything, follow the executions, sample, break things, judge."""

    def __init__(self, config: SoakConfig, redis_server: PrivateRedis, run_dir: Path) -> None:
        self.config, self.redis, self.run_dir = config, redis_server, run_dir
        prefix = os.environ.get("TEST_KEY_PREFIX", "soak")
        self.env = {**redis_env(redis_server.url, "pubsub", prefix), "SSE_FAST_PATH": "1",
                    "SSE_EXEC_JSON": json.dumps({"CLOSED_TTL": config.closed_ttl,
                                                 "RETRY_JITTER_MS": 1000})}
        self.web = Web("daphne", self.env, run_dir, "web")
        self.stop_file = run_dir / "stop"
        self.senders: list[subprocess.Popen[bytes]] = []
        self.clients = Follower(self._url, config.streams, random.Random(config.seed))
        self.faults = Faults()
        self.restarts: dict[str, list[float]] = {"web": [], "redis": []}
        self.samples: list[dict[str, Any]] = []

    def _url(self, execution_id: str) -> str:
        from django_sse_exec import stream_url

        return self.web.base_url + stream_url(execution_id)

    def minute(self) -> float:
        return (time.monotonic() - self.faults.started) / 60

    # -- senders and their records ---------------------------------------------------------

    def _start_senders(self) -> None:
        config = self.config
        per = [config.executions // config.senders + (i < config.executions % config.senders)
               for i in range(config.senders)]
        for i, slots in enumerate(per):
            path = self.run_dir / f"sender{i}.jsonl"
            self.clients.follow(path)
            with open(self.run_dir / f"sender{i}.log", "wb") as log:
                self.senders.append(subprocess.Popen(
                    [sys.executable, "-m", "bench.soak_sender", str(path), str(self.stop_file),
                     "--name", f"s{i}", "--slots", str(slots), "--seed", str(config.seed + i),
                     "--events", f"{config.events[0]}-{config.events[1]}"],
                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
                         "PYTHONPATH": str(ROOT), **self.env}))

    # -- samples and faults --------------------------------------------------------------

    def _sample_processes(self) -> dict[str, Any]:
        """The web process's and Redis's metrics (left out where the process is down)."""
        import httpx
        import psutil

        sample: dict[str, Any] = {"minute": round(self.minute(), 2)}
        server = self.web.server
        if server is not None and server.proc is not None and server.proc.poll() is None:
            pid = server.proc.pid
            try:
                sample["rss_mb"] = psutil.Process(pid).memory_info().rss / 2**20
                sample["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
                hub = httpx.get(self.web.base_url + "/control/hub", timeout=10).json()
                sample.update(streams=hub["streams"], groups=hub["groups"], tasks=hub["tasks"])
                # After a full collection: objects the collector tracks, allocator blocks.
                sample.update(httpx.get(self.web.base_url + "/control/objects", timeout=10).json())
            except (psutil.Error, OSError, httpx.HTTPError, ValueError):
                pass  # stopping or starting: what was read stays
        if self.redis.running:
            client = self.redis.client()
            try:
                sample["keys"] = client.dbsize()
                sample["redis_mb"] = client.info("memory")["used_memory"] / 2**20
            except Exception:  # down or loading: no sample
                pass
            finally:
                client.close()
        return sample

    async def _sampling(self, until: float) -> None:
        interval = self.config.sample_seconds
        k = 0
        while True:
            due = self.faults.started + (k + 0.5) * interval
            if due > until:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            sample = await asyncio.to_thread(self._sample_processes)
            sample.update(running=self.clients.running, delivered=self.clients.delivered)
            self.samples.append(sample)
            print(json.dumps(sample), file=sys.stderr, flush=True)
            k += 1

    async def _fault(self, kind: str) -> None:
        if kind == "web":
            self.faults.note("web-term")
            await asyncio.to_thread(self.web.stop, signal.SIGTERM)
            await asyncio.to_thread(self.web.start)
        else:
            self.faults.note("redis-shutdown", "data saved")
            await asyncio.to_thread(self.redis.stop, True)
            await asyncio.sleep(self.config.redis_down)
            await asyncio.to_thread(self.redis.start)
        self.restarts[kind].append(round(self.minute(), 2))
        self.faults.note(f"{kind}-up")
        print(f"fault: {self.faults.log[-2:]}", file=sys.stderr, flush=True)

    async def _faults(self) -> None:
        for fraction, kind in self.config.faults:
            at = self.faults.started + fraction * self.config.minutes * 60
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            await self._fault(kind)

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> None:
        await asyncio.to_thread(self.web.start)
        self._start_senders()
        await wait_until(lambda: all(t.path.exists() and t.path.stat().st_size for t in self.clients.tails),
                         120, "every sender started", interval=0.2)
        self.faults = Faults()  # the run's clock starts with the senders
        until = self.faults.started + self.config.minutes * 60
        sampling = asyncio.create_task(self._sampling(until))
        faults = asyncio.create_task(self._faults())
        try:
            while time.monotonic() < until:
                for s, proc in enumerate(self.senders):
                    if proc.poll() is not None:
                        raise RuntimeError(f"sender {s} exited: see {self.run_dir}/sender{s}.log")
                self.clients.read()
                await asyncio.sleep(0.5)
            await asyncio.gather(sampling, faults)
            self.stop_file.touch()
            self.faults.note("senders-stopping")
            for proc in self.senders:
                await asyncio.to_thread(proc.wait, 120)

            def all_judged() -> bool:
                self.clients.read()
                return not self.clients.followed

            try:
                await wait_until(all_judged, 120, "every execution judged", interval=0.5)
            except TimeoutError:
                pass  # the report counts them as not ended
        finally:
            sampling.cancel()
            faults.cancel()
            for proc in self.senders:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            await asyncio.to_thread(self.web.stop)

    def report(self) -> dict[str, Any]:
        """Everything the run measured (what ``soak.json`` holds; :func:`print_report`)."""
        config = self.config
        unended = self.clients.judge_rest()
        tally, counts = self.clients.tally, self.clients.counts
        logs = {p.name: sum(1 for line in p.read_text(errors="replace").splitlines()
                            if " ERROR " in line or " WARNING " in line)
                for p in sorted(self.run_dir.glob("web-daphne-*.log"))}
        title = (f"{config.minutes:g} min, {config.executions} executions at once "
                 f"({config.events[0]}-{config.events[1]} events at 1/s each), "
                 f"{config.streams[0]}-{config.streams[1]} streams each, {config.senders} sender "
                 f"processes; daphne fast path, pub/sub layer, private Redis; seed {config.seed}; "
                 f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; run dir {self.run_dir}")
        return {
            "title": title, "config": asdict(config), "faults": self.faults.log,
            "restarts": self.restarts, "samples": self.samples, "lost": tally.lost,
            "unended": unended,
            "warmup": {"web": config.warmup_minutes, "redis": config.redis_warmup},
            "settle": config.settle_minutes,
            "counts": {"executions": counts["executions"], "streams": counts["streams"],
                       "sent": counts["sent"], "send failures (Redis down)": counts["send_failures"],
                       "delivered": tally.received, "duplicated": tally.duplicated,
                       "out of order": tally.out_of_order, "resets": tally.resets,
                       "client reconnects": counts["reconnects"],
                       "failed clients": tally.failed_clients,
                       "unexpected send errors": len(self.clients.unexpected),
                       "web log errors and warnings": logs},
            "failures": self.clients.failures, "unexpected": self.clients.unexpected}


def print_report(data: dict[str, Any]) -> bool:
    """Print a run's samples, slopes and verdicts (from :meth:`Soak.report` or a saved
    ``soak.json``); True if every slope is flat, nothing was lost and every execution ended."""
    fits = soak_report.fits(data["samples"], data["restarts"], data["warmup"], data["settle"])
    print(f"\nSoak: {data['title']}")
    print("faults: " + ", ".join(f"{t / 60:.2f} min {kind} {detail}".strip()
                                 for t, kind, detail in data["faults"]))
    print("\n" + soak_report.samples_table(data["samples"]))
    settle = "as long as the warm-up" if data["settle"] is None else f"{data['settle']:g} min"
    print(f"\nSlopes after {data['warmup']['web']:g} min of warm-up (Redis: "
          f"{data['warmup']['redis']:g} min), leaving out {settle} after each restart:\n")
    print(soak_report.slopes_table(fits))
    print("\n" + soak_report.summary(fits, data["lost"], data["unended"], data["counts"]))
    for line in data["unexpected"][:5] + data["failures"][:10]:
        print(f"  {line}")
    return (data["lost"] == 0 and data["unended"] == 0 and not data["failures"]
            and not data["unexpected"] and all(f.verdict == "flat" for f in fits))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 30)))
    parser.add_argument("--executions", type=int, default=200, help="running at once")
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--events", default="30-120", help="events per execution, MIN-MAX")
    parser.add_argument("--streams", default="1-3", help="streams per execution, MIN-MAX")
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--warmup-minutes", type=float, default=3.0,
                        help="left out of the web process's slopes")
    parser.add_argument("--redis-warmup-minutes", type=float,
                        help="left out of Redis's (default: CLOSED_TTL + longest execution + 1)")
    parser.add_argument("--settle-minutes", type=float,
                        help="left out after a restart (default: the process's warm-up)")
    parser.add_argument("--redis-down", type=float, default=5.0, help="seconds")
    parser.add_argument("--faults", default="web@0.333,redis@0.667",
                        help="KIND@FRACTION of the run, comma-separated (web, redis; empty: none)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--run-dir", type=Path, help="keep logs, records and soak.json here")
    parser.add_argument("--report", type=Path, metavar="SOAK_JSON",
                        help="print a saved run's report again (warm-up options apply), run nothing")
    args = parser.parse_args(argv)
    if args.report:
        data = json.loads(args.report.read_text())
        data["warmup"] = {"web": args.warmup_minutes,
                          "redis": args.redis_warmup_minutes or data["warmup"]["redis"]}
        data["settle"] = args.settle_minutes
        return 0 if print_report(data) else 1
    config = SoakConfig(minutes=args.minutes, executions=args.executions, senders=args.senders,
                        events=parse_range(args.events), streams=parse_range(args.streams),
                        sample_seconds=args.sample_seconds, warmup_minutes=args.warmup_minutes,
                        redis_warmup_minutes=args.redis_warmup_minutes,
                        settle_minutes=args.settle_minutes, redis_down=args.redis_down,
                        faults=tuple((float(f.partition("@")[2]), f.partition("@")[0])
                                     for f in args.faults.split(",") if f))
    if args.seed is not None:
        config.seed = args.seed
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    (run_dir / "redis").mkdir(parents=True, exist_ok=True)
    redis_server = PrivateRedis(run_dir / "redis").start()
    try:
        soak = Soak(config, redis_server, run_dir)
        os.environ.update(soak.env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
        import django

        django.setup()
        asyncio.run(soak.run())
        data = soak.report()
        (run_dir / "soak.json").write_text(json.dumps(data, indent=1))
        return 0 if print_report(data) else 1
    finally:
        redis_server.stop()


if __name__ == "__main__":
    sys.exit(main())
