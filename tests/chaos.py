"""The chaos run: real processes, real faults, and a per-client check of every event.

Two daphne and one uvicorn process serve streams from one private Redis (on a free
port: this run kills, restarts and wipes it); sender processes
(:mod:`tests.chaos_sender`) send with the sync helpers, as Celery tasks do; a swarm
of raw-socket clients follows the executions, each on one web process with the
other two as alternates, reconnecting with ``Last-Event-ID``. Meanwhile, at random
moments, a web process is killed (-9) or stopped (TERM) and started again, and
Redis is restarted with its data (saved) or without it (killed, nothing saved).
At the end the senders close their executions, every client must end, and
:mod:`tests.chaos_check` judges each client against the senders' records.

    python -m tests.chaos --layer both --minutes 3     # what ``make chaos`` runs
    python -m tests.chaos --layer core --seconds 60 --clients 50 --faults kill,redis-save

``tests/test_chaos.py`` runs it small, once per channel layer. Exit status 1 when
any client's events break the rules.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos_check import check_client, incarnations
from tests.chaos_report import Faults, Report, clients_received, read_records
from tests.helpers import PrivateRedis, wait_until
from tests.loadclient import Swarm
from tests.server import ROOT, Server, free_port
from tests.workers import redis_env

#: The fault kinds: web process killed -9 / stopped with TERM; Redis restarted with / without data.
FAULTS = ("kill", "term", "redis-save", "redis-wipe")
#: ``--layer`` names -> ``TEST_LAYER`` of tests.settings.
LAYERS = {"core": "redis", "pubsub": "pubsub"}


@dataclass
class ChaosConfig:
    """How big a run is and what goes wrong in it."""

    layer: str = "core"
    seconds: float = 60.0
    clients: int = 200
    senders: int = 4
    executions_per_sender: int = 2
    #: Events per second, per sender.
    rate: float = 20.0
    faults: tuple[str, ...] = FAULTS
    #: Seconds between one fault's recovery and the next fault (uniform in the range).
    gap: tuple[float, float] = (2.0, 6.0)
    #: Seconds a web process or Redis stays down (uniform in the range).
    down: tuple[float, float] = (0.3, 2.5)
    seed: int = field(default_factory=lambda: random.randrange(1 << 30))
    #: Where logs and records go (default: a new temporary directory).
    run_dir: Path | None = None


class Web:
    """One web process on a fixed port, restartable; every generation logs to its own file."""

    def __init__(self, kind: str, env: dict[str, str], run_dir: Path, name: str) -> None:
        self.kind, self.env, self.run_dir, self.name = kind, env, run_dir, name
        self.port = free_port()
        self.generation = 0
        self.server: Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.generation += 1
        server = Server(self.kind, env=self.env, port=self.port)
        server.log_path = self.run_dir / f"{self.name}-{self.kind}-{self.generation}.log"
        self.server = server.start(timeout=60)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.server is not None:
            self.server.stop(sig)


class Chaos:
    """One run: set up, send and break things for ``config.seconds``, end, judge."""

    def __init__(self, config: ChaosConfig, redis_server: PrivateRedis) -> None:
        self.config = config
        self.redis = redis_server
        self.rng = random.Random(config.seed)
        self.run_dir = config.run_dir or Path(tempfile.mkdtemp(prefix="chaos-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:6]
        self.executions = [f"chaos-{tag}-{s}-{j}" for s in range(config.senders)
                           for j in range(config.executions_per_sender)]
        options = {"HEARTBEAT": 1, "REPAIR_INTERVAL": 0.5, "KEEPALIVE": 15, "RETRY_MS": 200,
                   "RETRY_JITTER_MS": 300, "HISTORY_MAX_EVENTS": 1_000_000}
        self.env = {**redis_env(redis_server.url, LAYERS[config.layer]),
                    "SSE_EXEC_JSON": json.dumps(options)}
        self.webs = [Web(kind, self.env, self.run_dir, f"web{i}")
                     for i, kind in enumerate(("daphne", "daphne", "uvicorn"))]
        self.faults = Faults()
        self.stop_file = self.run_dir / "stop"
        self.senders: list[subprocess.Popen[bytes]] = []

    def _urls(self, execution_id: str) -> list[str]:
        from django_sse_exec import stream_url

        path = stream_url(execution_id)
        return [web.base_url + path for web in self.webs]

    def _start_senders(self) -> None:
        per = self.config.executions_per_sender
        for s in range(self.config.senders):
            mine = self.executions[s * per:(s + 1) * per]
            with open(self.run_dir / f"sender{s}.log", "wb") as log:
                self.senders.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.chaos_sender", str(self.run_dir / f"sender{s}.jsonl"),
                     str(self.stop_file), *mine, "--rate", str(self.config.rate)],
                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
                         "PYTHONPATH": str(ROOT), **self.env}))

    def _senders_sending(self) -> bool:
        """True once every sender recorded a send that returned an id."""
        for s, proc in enumerate(self.senders):
            if proc.poll() is not None:
                raise RuntimeError(f"sender {s} exited: see {self.run_dir}/sender{s}.log")
            path = self.run_dir / f"sender{s}.jsonl"
            if not path.exists() or not re.search(r'"id": \d', path.read_text()):
                return False
        return True

    async def _fault(self, kind: str) -> None:
        down = self.rng.uniform(*self.config.down)
        if kind in ("kill", "term"):
            web = self.rng.choice(self.webs)
            self.faults.note(kind, web.name)
            await asyncio.to_thread(web.stop, signal.SIGKILL if kind == "kill" else signal.SIGTERM)
            await asyncio.sleep(down)
            await asyncio.to_thread(web.start)
            self.faults.note("web-restart", web.name)
            return
        self.faults.note(kind, f"down {down:.1f}s")
        self.redis.stop(save=kind == "redis-save")
        if kind == "redis-wipe":
            (self.redis.directory / "dump.rdb").unlink(missing_ok=True)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.redis.start)
        self.faults.note("redis-up", f"{self.redis.client().dbsize()} keys")

    async def _break_things(self, until: float) -> None:
        """Faults at random moments until ``until``: every kind at least once, then at random.

        With ``redis-wipe`` among them, the last fault is always a wipe, and the senders
        stop and close their executions a moment later (a few events into the new log):
        the order in which a lost log is hardest to recover from (the reconnects with
        old ids may come after the close).
        """
        kinds = self.config.faults
        plan = list(kinds)
        self.rng.shuffle(plan)
        while (time.monotonic() < until or plan) and kinds:
            await asyncio.sleep(self.rng.uniform(*self.config.gap))
            await self._fault(plan.pop(0) if plan else self.rng.choice(kinds))
        if "redis-wipe" in kinds:
            await asyncio.sleep(self.rng.uniform(*self.config.gap))
            await self._fault("redis-wipe")
        await asyncio.sleep(self.rng.uniform(0.2, 1.5))

    async def run(self) -> Report:
        """The whole run; returns the report (call :meth:`Report.print`)."""
        started = time.monotonic()
        try:
            swarms = await self._run()
        finally:
            for proc in self.senders:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for web in self.webs:
                await asyncio.to_thread(web.stop)
        return self._judge(swarms, time.monotonic() - started)

    async def _run(self) -> list[tuple[str, str, Swarm]]:
        config = self.config
        for web in self.webs:
            await asyncio.to_thread(web.start)
        async with AsyncExitStack() as stack:
            swarms: list[tuple[str, str, Swarm]] = []
            groups: dict[tuple[int, int], int] = {}
            for i in range(config.clients):  # client i: execution i mod E, on web i mod 3
                key = (i % len(self.executions), i % len(self.webs))
                groups[key] = groups.get(key, 0) + 1
            for (e, w), count in sorted(groups.items()):
                urls = self._urls(self.executions[e])
                swarm = await stack.enter_async_context(Swarm(
                    [urls[w]] * count, connect_timeout=120,
                    alternates=urls[w + 1:] + urls[:w]))
                swarms.append((self.executions[e], self.webs[w].name, swarm))
            self._start_senders()
            await wait_until(self._senders_sending, 180, "every sender sending", interval=0.2)
            self.faults.note("senders-sending")
            await self._break_things(time.monotonic() + config.seconds)
            # The end: everything up, then the senders stop and close their executions.
            if not self.redis.running:
                await asyncio.to_thread(self.redis.start)
            for web in self.webs:
                if web.server is None or web.server.proc is None or web.server.proc.poll() is not None:
                    await asyncio.to_thread(web.start)
            self.stop_file.touch()
            self.faults.note("senders-stopping")
            for s, proc in enumerate(self.senders):
                try:
                    await asyncio.to_thread(proc.wait, 120)
                except subprocess.TimeoutExpired:
                    proc.kill()  # its executions stay unclosed: the report says so
                    self.faults.note("sender-hung", f"sender{s}")
            clients = [c for _, _, s in swarms for c in s.clients]
            try:
                await wait_until(lambda: all(c.finished for c in clients), 90,
                                 what="every client ended", interval=0.2)
            except TimeoutError:
                pass  # the check names the clients that did not end
        return swarms


    def _judge(self, swarms: list[tuple[str, str, Swarm]], took: float) -> Report:
        records = read_records(self.run_dir.glob("sender*.jsonl"))
        report = Report(config=self.config, run_dir=self.run_dir, faults=self.faults,
                        records=records, seconds=took)
        for execution, web, swarm in swarms:
            incs = incarnations(records.sends.get(execution, []))
            for index, client in enumerate(swarm.clients):
                verdict = check_client(clients_received(client), incs, client.finished)
                report.add(f"{execution}/{web}/{index}", client, verdict)
        return report


async def run_chaos(config: ChaosConfig, redis_server: PrivateRedis | None = None) -> Report:
    """Run once; starts (and stops) a private Redis unless one is given."""
    own = redis_server is None
    if redis_server is None:
        base = config.run_dir or Path(tempfile.mkdtemp(prefix="chaos-"))
        config.run_dir = base
        (base / "redis").mkdir(parents=True, exist_ok=True)
        redis_server = PrivateRedis(base / "redis").start()
    try:
        return await Chaos(config, redis_server).run()
    finally:
        if own:
            redis_server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layer", choices=[*LAYERS, "both"], default="both")
    parser.add_argument("--minutes", type=float, help="per layer (default: --seconds)")
    parser.add_argument("--seconds", type=float, default=60.0, help="per layer")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--executions-per-sender", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20.0, help="events/s per sender")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"comma-separated, from {','.join(FAULTS)} (empty: none)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--run-dir", type=Path, help="keep logs and records here")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    if shutil.which("redis-server") is None:
        parser.error("redis-server is not installed")
    faults = tuple(f for f in args.faults.split(",") if f)
    if set(faults) - set(FAULTS):
        parser.error(f"unknown faults: {set(faults) - set(FAULTS)}")
    ok = True
    for layer in (list(LAYERS) if args.layer == "both" else [args.layer]):
        config = ChaosConfig(layer=layer, clients=args.clients, senders=args.senders,
                             executions_per_sender=args.executions_per_sender, rate=args.rate,
                             seconds=args.minutes * 60 if args.minutes else args.seconds,
                             faults=faults,
                             run_dir=args.run_dir / layer if args.run_dir else None)
        if args.seed is not None:
            config.seed = args.seed
        report = asyncio.run(run_chaos(config))
        report.print()
        ok = ok and report.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
