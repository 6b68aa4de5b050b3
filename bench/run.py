"""Run every system through the same scenarios in one run and print the table.

    python -m bench.run                     # everything (several minutes)
    python -m bench.run --quick             # small sizes, to check the bench itself
    python -m bench.run --systems raw,fast-uvicorn --scenarios idle,paced
    python -m bench.run --deps fast         # only with the fast dependency set (default: both)

Each system is started on its own free port on 127.0.0.1, all on the same
Redis (a key prefix unique to the run), and driven by :mod:`bench.client` from
this process; events are sent from this process too, each with its send time
``"t"`` first in the payload. Ratios are taken against the raw asyncio server
measured in the same run.

Every system runs without and with the fast dependency set (``--deps``, see
:mod:`bench.deps`): "stdlib" is uvicorn's asyncio loop and h11 parser, daphne's
default loop, redis-py's Python parser; "+fast" is uvloop (uvicorn, daphne and
the raw server alike), httptools (uvicorn) and hiredis (everyone's Redis
replies). A system with the set is compared with raw with the set (``raw+fast``),
so every ratio has the same event loop and Redis parser on both sides. Each
server's loop and parser are read back from it (``/bench/runtime``) and must be
the ones asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PREFIX = f"bench_{os.getpid()}"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# The driver and every Django server share these settings.
SERVER_ENV = {"DJANGO_SETTINGS_MODULE": "bench.settings", "TEST_LAYER": "redis",
              "TEST_KEY_PREFIX": PREFIX, "REDIS_URL": REDIS_URL,
              "SSE_EXEC_JSON": json.dumps({"KEEPALIVE": 15})}
os.environ.update(SERVER_ENV)
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.test import override_settings  # noqa: E402

from bench import deps  # noqa: E402
from bench.client import Sink, close_all, open_streams  # noqa: E402
from bench.text import fmt, pct  # noqa: E402
from tests.server import Server, free_port  # noqa: E402

PAD = "x" * 64  # payload padding: a realistic progress event is ~100 bytes of JSON


# -- the systems ---------------------------------------------------------------------


@dataclass
class System:
    """One server under test: how to start it, where its streams are, how to send to them."""

    name: str
    server: str  # daphne | uvicorn | raw
    flavour: str  # view | fast | eventstream | naive | raw
    label: str
    #: Channel-layer alias of the app (bench/settings.py): "pubsub" or "core".
    layer: str = "pubsub"
    #: Extra server arguments.
    args: tuple[str, ...] = ()
    #: With the fast dependency set (bench.deps): uvloop, httptools (uvicorn), hiredis.
    fast: bool = False
    proc: Any = None
    port: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    #: What the server process runs, read back from it (event loop, Redis parser).
    runtime: dict[str, str] = field(default_factory=dict)

    def with_fast_set(self) -> System:
        """This system with the fast dependency set (named ``<name>+fast``)."""
        return replace(self, name=self.name + deps.SUFFIX, label=f"{self.label} + fast set",
                       fast=True, counters={}, runtime={})

    # lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if self.server == "raw":
            self.port = free_port()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.raw_server", "--port", str(self.port),
                 "--prefix", f"{PREFIX}_raw", "--redis-url", REDIS_URL,
                 "--loop", "uvloop" if self.fast else "asyncio"],
                cwd=ROOT, env=deps.env_for(self.fast, {**os.environ, "PYTHONPATH": str(ROOT)}))
            _wait_for_port(self.port, self.proc)
            self.runtime = {"loop": "uvloop" if self.fast else "asyncio"}
            return
        env = deps.env_for(self.fast, {**SERVER_ENV, "BENCH_SSE_LAYER": self.layer, "PYTHONPATH": str(ROOT)})
        if self.flavour == "fast":
            env["SSE_FAST_PATH"] = "1"
        args = (*deps.uvicorn_args(self.fast), *self.args) if self.server == "uvicorn" else self.args
        self.proc = _Server(self.server, env=env, args_extra=args, fast=self.fast).start()
        self.port = self.proc.port
        self.runtime = _runtime(self)

    def stop(self) -> None:
        if isinstance(self.proc, Server):
            self.proc.stop()
        elif self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def pid(self) -> int:
        return self.proc.proc.pid if isinstance(self.proc, Server) else self.proc.pid

    # streams and sends ----------------------------------------------------------

    def url(self, execution_id: str) -> str:
        base = f"http://127.0.0.1:{self.port}"
        if self.flavour in ("view", "fast"):
            from django_sse_exec import stream_url

            return base + stream_url(execution_id)
        if self.flavour == "eventstream":
            return f"{base}/es/?channel={execution_id}"
        if self.flavour == "naive":
            return f"{base}/naive/{execution_id}"
        return f"{base}/raw/{execution_id}"

    async def send(self, execution_id: str) -> None:
        """Send the next event of ``execution_id``, stamped with the current time."""
        n = self.counters.get(execution_id, 0) + 1
        self.counters[execution_id] = n
        payload = {"t": time.time(), "n": n, "pad": PAD}
        if self.flavour in ("view", "fast"):
            from django_sse_exec import asend_sse_event

            await asend_sse_event(execution_id, "tick", payload)
        elif self.flavour == "eventstream":
            from django_eventstream import send_event

            send_event(execution_id, "tick", payload)
        elif self.flavour == "naive":
            from channels.layers import get_channel_layer

            from bench.naive import MESSAGE_TYPE, group_name

            await get_channel_layer("naive").group_send(group_name(execution_id), {
                "type": MESSAGE_TYPE, "id": n, "event": "tick",
                "data": json.dumps(payload, separators=(",", ":"))})
        else:
            await _raw_redis().publish(f"{PREFIX}_raw.{execution_id}",
                                       f"{n}\ntick\n{json.dumps(payload, separators=(',', ':'))}")


class _Server(Server):
    """The tests' server, with extra command-line arguments, and daphne on uvloop with the set."""

    def __init__(self, *args: Any, args_extra: tuple[str, ...] = (), fast: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.args_extra = args_extra
        self.fast = fast

    def command(self) -> list[str]:
        command = super().command()
        if self.kind == "daphne":
            command = [*deps.daphne_command(self.fast), *command[1:]]
        return [*command, *self.args_extra]


def _runtime(system: System) -> dict[str, str]:
    """What the server runs (``/bench/runtime``); RuntimeError unless it is the set asked for."""
    import httpx

    response = httpx.get(f"http://127.0.0.1:{system.port}/bench/runtime", timeout=10)
    if response.status_code != 200:  # e.g. another process's server took the port first
        raise RuntimeError(f"{system.name}: /bench/runtime answered {response.status_code}: "
                           f"{response.text[:200]!r}")
    runtime: dict[str, str] = response.json()
    uvloop = runtime["loop"].startswith("uvloop")
    hiredis = runtime["redis_parser"] == "_AsyncHiredisParser"
    if uvloop != system.fast or hiredis != system.fast:
        raise RuntimeError(f"{system.name} runs {runtime}, not the {deps.LABELS[system.fast]} set")
    return runtime


#: The driver's Redis client for raw's PUBLISH, per event loop (each system runs in its own).
_redis_clients: dict[Any, Any] = {}


def _raw_redis() -> Any:
    loop = asyncio.get_running_loop()
    if loop not in _redis_clients:
        import redis.asyncio as redis

        _redis_clients.clear()  # a client of a finished loop cannot be used again
        _redis_clients[loop] = redis.Redis.from_url(REDIS_URL)
    return _redis_clients[loop]


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the raw server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the raw server did not start")


SYSTEMS = {
    "raw": System("raw", "raw", "raw", "raw asyncio (ceiling)"),
    "fast-uvicorn": System("fast-uvicorn", "uvicorn", "fast", "this app, fast path, uvicorn"),
    "fast-daphne": System("fast-daphne", "daphne", "fast", "this app, fast path, daphne"),
    "view-uvicorn": System("view-uvicorn", "uvicorn", "view", "this app, view, uvicorn"),
    "view-daphne": System("view-daphne", "daphne", "view", "this app, view, daphne"),
    "fast-uvicorn-core": System("fast-uvicorn-core", "uvicorn", "fast",
                                "this app, fast path, uvicorn, core layer", layer="core"),
    "naive-daphne": System("naive-daphne", "daphne", "naive", "naive channels view, daphne"),
    "eventstream-daphne": System("eventstream-daphne", "daphne", "eventstream",
                                 "django-eventstream (Redis), daphne"),
}
#: Systems that also get the 10,000-stream scenario (it needs ~20k file descriptors).
HUGE_SYSTEMS = {"raw", "fast-uvicorn", "fast-daphne", "view-uvicorn"}


def system_named(name: str) -> System:
    """A system of :data:`SYSTEMS` by name; ``<name>+fast`` is it with the fast dependency set."""
    base = SYSTEMS[name.removesuffix(deps.SUFFIX)]
    return base.with_fast_set() if name.endswith(deps.SUFFIX) else replace(base, counters={}, runtime={})


def with_deps(names: list[str], choice: str) -> list[str]:
    """``names`` without the fast set, with it, or both (``choice``), raw first in each."""
    variants = {"stdlib": [""], "fast": [deps.SUFFIX], "both": ["", deps.SUFFIX]}[choice]
    return [n + suffix for suffix in variants for n in names if not n.endswith(deps.SUFFIX)]


# -- measuring ---------------------------------------------------------------------------


def rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def settle(sink: Sink, expected: int, quiet: float = 5.0, limit: float = 90.0) -> None:
    """Wait until ``expected`` events arrived, or nothing arrived for ``quiet`` seconds."""
    started = time.monotonic()
    last_count, last_change = -1, time.monotonic()
    while sink.events < expected and time.monotonic() - started < limit:
        if sink.events != last_count:
            last_count, last_change = sink.events, time.monotonic()
        elif time.monotonic() - last_change > quiet:
            break
        await asyncio.sleep(0.02)


async def wait_streams(system: System, count: int, timeout: float = 20) -> None:
    """Wait until the server counts ``count`` open streams (where it can tell us)."""
    if system.flavour not in ("view", "fast"):
        await asyncio.sleep(0.5)  # others cannot tell; give subscriptions a moment
        return
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < deadline:
            stats = (await client.get(f"http://127.0.0.1:{system.port}/control/hub")).json()
            if stats["streams"] >= count:
                return
            await asyncio.sleep(0.1)


async def warm_up(system: System) -> None:
    """A few streams and an event, so lazy imports and the hub do not count as load."""
    execution_id = f"warm-{uuid.uuid4().hex[:8]}"
    sink = Sink()
    streams, _ = await open_streams([system.url(execution_id)] * 5, sink)
    await wait_streams(system, 5)
    await system.send(execution_id)
    await settle(sink, 5, quiet=2)
    close_all(streams)
    await asyncio.sleep(0.5)


@dataclass
class Opened:
    """Streams opened on a server: what they receive, how long it took, its RSS growth."""

    streams: list[Any]
    sink: Sink
    seconds: float
    ok: int
    rss_growth: int


async def open_measured(system: System, urls: list[str], concurrency: int) -> Opened:
    """Open a stream per url (``concurrency`` at a time), wait until the server counts
    them, and measure the server's RSS growth once they are open."""
    gc.collect()
    before = rss(system.pid)
    sink = Sink()
    streams, seconds = await open_streams(urls, sink, concurrency=concurrency)
    ok = sum(1 for s in streams if s.status == 200 and not s.closed)
    await wait_streams(system, ok)
    await asyncio.sleep(1.0)
    return Opened(streams, sink, seconds, ok, rss(system.pid) - before)


async def scenario_idle(system: System, clients: int) -> dict[str, Any]:
    """``clients`` streams on as many executions: time to connect all, RSS per stream."""
    run = uuid.uuid4().hex[:8]
    urls = [system.url(f"idle-{run}-{i}") for i in range(clients)]
    opened = await open_measured(system, urls, clients)
    streams, seconds, ok = opened.streams, opened.seconds, opened.ok
    close_all(streams)
    await asyncio.sleep(1.0)
    return {"idle_clients": clients, "idle_ok": ok, "idle_connect_s": seconds,
            "idle_rss_per_conn_kb": opened.rss_growth / max(ok, 1) / 1024}


async def scenario_paced_and_burst(system: System, clients: int, rate: float, seconds: float,
                                   burst: int) -> dict[str, Any]:
    """``clients`` streams on one execution: paced events (latency), then a burst (throughput)."""
    execution_id = f"fan-{uuid.uuid4().hex[:8]}"
    sink = Sink()
    streams, connect_s = await open_streams([system.url(execution_id)] * clients, sink)
    ok = sum(1 for s in streams if s.status == 200 and not s.closed)
    await wait_streams(system, ok)
    result: dict[str, Any] = {"fan_clients": clients, "fan_ok": ok, "fan_connect_s": connect_s}

    # Paced: `rate` events per second for `seconds`.
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    start = loop.time()
    send_times = []
    cpu_before = cpu_seconds(system.pid)
    client_before = cpu_seconds(os.getpid())
    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        began = loop.time()
        await system.send(execution_id)
        send_times.append(loop.time() - began)
    await settle(sink, count * clients)
    lat = sink.latencies
    result["paced_send_p99_ms"] = pct(send_times, 0.99) * 1000
    result["paced_server_us_per_event"] = (cpu_seconds(system.pid) - cpu_before) / max(sink.events, 1) * 1e6
    result["paced_client_us_per_event"] = (cpu_seconds(os.getpid()) - client_before) / max(sink.events, 1) * 1e6
    result["paced_lag_ms"] = (loop.time() - start - count / rate) * 1000
    result.update({"paced_events": count, "paced_expected": count * clients,
                   "paced_received": sink.events,
                   "paced_lost": count * clients - sink.events,
                   "paced_p50_ms": pct(lat, 0.50) * 1000, "paced_p99_ms": pct(lat, 0.99) * 1000})

    # Burst: `burst` events as fast as the sender can, to the same streams.
    sink.reset()
    sink.record_latency = False
    cpu_before = cpu_seconds(system.pid)
    t0 = time.time()
    for _ in range(burst):
        await system.send(execution_id)
    sent_s = time.time() - t0
    await settle(sink, burst * clients)
    cpu = cpu_seconds(system.pid) - cpu_before
    elapsed = (sink.last_at - t0) if sink.events else float("nan")
    result.update({"burst_events": burst, "burst_expected": burst * clients,
                   "burst_received": sink.events, "burst_lost": burst * clients - sink.events,
                   "burst_per_s": sink.events / elapsed if sink.events else 0.0,
                   "burst_send_s": sent_s,
                   "burst_server_us_per_event": cpu / max(sink.events, 1) * 1e6,
                   "ids_in_order": all(s.ids_ok for s in streams if s.status == 200)})
    close_all(streams)
    await asyncio.sleep(1.0)
    return result


async def scenario_huge(system: System, clients: int, events: int) -> dict[str, Any]:
    """``clients`` streams in one server process: connect them all, deliver a few events."""
    gc.collect()
    before = rss(system.pid)
    run = uuid.uuid4().hex[:8]
    executions = [f"huge-{run}-{i}" for i in range(100)]
    urls = [system.url(executions[i % len(executions)]) for i in range(clients)]
    sink = Sink()
    streams, seconds = await open_streams(urls, sink, concurrency=2000, timeout=120)
    ok = sum(1 for s in streams if s.status == 200 and not s.closed)
    await wait_streams(system, ok, timeout=60)
    after = rss(system.pid)
    t0 = time.time()
    for _ in range(events):
        for execution_id in executions:
            await system.send(execution_id)
    await settle(sink, events * clients)
    close_all(streams)
    await asyncio.sleep(2.0)
    return {"huge_clients": clients, "huge_ok": ok, "huge_connect_s": seconds,
            "huge_rss_per_conn_kb": (after - before) / max(ok, 1) / 1024,
            "huge_expected": events * clients, "huge_received": sink.events,
            "huge_deliver_s": (sink.last_at - t0) if sink.events else float("nan")}


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Sizes:
    idle: int = 2000
    fan: int = 1000
    rate: float = 20.0
    seconds: float = 10.0
    burst: int = 200
    huge: int = 10_000
    huge_events: int = 2
    sync_sends: int = 20_000


QUICK = Sizes(idle=200, fan=100, seconds=3.0, burst=50, huge=500, huge_events=1, sync_sends=2000)


def start_profiler(system: System, out_dir: str) -> subprocess.Popen[bytes]:
    """Sample the server with py-spy (collapsed stacks) until :func:`stop_profiler`."""
    out = Path(out_dir) / f"{system.name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                             str(system.pid), "--rate", "200", "--format", "raw", "--nonblocking",
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(proc: subprocess.Popen[bytes]) -> None:
    import signal

    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def summarise_profile(path: str, top: int = 25) -> str:
    """Where the server's time went: the functions with most samples, self and inclusive."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].split(":")[0].rstrip(")")
                  for f in stack.split(";")]
        if frames and "idle" not in stack:
            total += n
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + n
    lines = [f"{path}: {total} busy samples", "self:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]]
    lines.append("inclusive:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in
              sorted(inclusive.items(), key=lambda x: -x[1])[:top]]
    return "\n".join(lines)


async def bench_system(system: System, scenarios: set[str], sizes: Sizes,
                       profile: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"system": system.name, "label": system.label, "fast": system.fast}
    try:
        system.start()
    except Exception as exc:  # e.g. not running the dependency set asked for
        system.stop()
        return {**result, "error": f"{type(exc).__name__}: {exc}"}
    result["runtime"] = system.runtime
    if isinstance(system.proc, Server):
        result["server_log"] = str(system.proc.log_path)
    profiler = None
    try:
        await warm_up(system)
        if profile:
            profiler = start_profiler(system, profile)
        if "idle" in scenarios:
            result.update(await scenario_idle(system, sizes.idle))
        if "paced" in scenarios:
            result.update(await scenario_paced_and_burst(system, sizes.fan, sizes.rate,
                                                         sizes.seconds, sizes.burst))
        if "huge" in scenarios and system.name.removesuffix(deps.SUFFIX) in HUGE_SYSTEMS:
            result.update(await scenario_huge(system, sizes.huge, sizes.huge_events))
    except Exception as exc:  # one system failing must not lose the others' figures
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if profiler is not None:
            stop_profiler(profiler)
        system.stop()
    return result


def sync_send_figures(count: int) -> str:
    """The sync ``send_sse_event`` rate against raw ``PUBLISH`` (bench/sync_send.py)."""
    script = ROOT / "bench" / "sync_send.py"
    command = [sys.executable, str(script), "-n", str(count)]
    print(f"$ python bench/sync_send.py -n {count}", file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TEST_KEY_PREFIX": f"{PREFIX}_sync"})
    return (done.stdout + done.stderr).strip()


def delete_run_keys() -> int:
    """Delete the Redis keys this run created (logs live for HISTORY_TTL otherwise)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    deleted = 0
    for pattern in (f"{PREFIX}*", f"asgi_{PREFIX}*", f"naive_{PREFIX}*"):
        keys = list(client.scan_iter(match=pattern, count=5000))
        for i in range(0, len(keys), 1000):
            deleted += client.delete(*keys[i:i + 1000])
    client.close()
    return deleted


def table(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table, with ratios against the raw server of the same set."""
    raws = {r["system"]: r for r in results if r["system"] in ("raw", "raw" + deps.SUFFIX)}
    rows = [
        "| system | paced p50 / p99 ms (×raw p99) | paced lost | burst delivered/s (×raw) | "
        "burst lost | server µs/event | idle: connect s, 200s | RSS KB/idle conn | "
        "10k: connect s, served |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r and "paced_p99_ms" not in r and "idle_ok" not in r:
            rows.append(f"| {r['label']} | failed: {r['error']} |||||||| ")
            continue
        raw = raws.get(deps.reference_of(r["system"]), {})
        p99_ratio = (r.get("paced_p99_ms", 0) / raw["paced_p99_ms"]) if raw.get("paced_p99_ms") else None
        burst_ratio = (r.get("burst_per_s", 0) / raw["burst_per_s"]) if raw.get("burst_per_s") else None
        huge = (f"{fmt(r.get('huge_connect_s'), '.2f')}, {r.get('huge_ok')}/{r.get('huge_clients')}"
                f" ({r.get('huge_received')}/{r.get('huge_expected')} ev)"
                if "huge_ok" in r else "–")
        rows.append(
            f"| {r['label']} | {fmt(r.get('paced_p50_ms'))} / {fmt(r.get('paced_p99_ms'))} "
            f"(×{fmt(p99_ratio, '.1f')}) | {r.get('paced_lost', '–')} | "
            f"{fmt(r.get('burst_per_s'))} (×{fmt(burst_ratio, '.2f')}) | {r.get('burst_lost', '–')} | "
            f"{fmt(r.get('burst_server_us_per_event'), '.1f')} | "
            f"{fmt(r.get('idle_connect_s'), '.2f')}, {r.get('idle_ok', '–')}/{r.get('idle_clients', '–')} | "
            f"{fmt(r.get('idle_rss_per_conn_kb'), '.1f')} | {huge} |"
            + (f" error: {r['error']}" if "error" in r else ""))
    return "\n".join(rows)


def by_deps(results: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The results of each dependency set, named without the suffix (each set has its own raw)."""
    groups = []
    for fast in (False, True):
        group = [{**r, "system": r["system"].removesuffix(deps.SUFFIX)} for r in results
                 if r["system"].endswith(deps.SUFFIX) == fast]
        if group:
            groups.append((deps.LABELS[fast], group))
    return groups


def targets(results: list[dict[str, Any]]) -> str:
    """Each target of the issue, for each dependency set: met or missed, with the figures."""
    return "\n".join(f"{title}:\n{_targets(group)}" for title, group in by_deps(results))


def _targets(results: list[dict[str, Any]]) -> str:
    by = {r["system"]: r for r in results}
    raw = by.get("raw", {})
    lines = []

    def check(what: str, ok: bool, detail: str) -> None:
        lines.append(f"- [{'x' if ok else ' '}] {what}: {detail}")

    ours = [s for s in ("fast-uvicorn", "fast-daphne", "view-uvicorn", "view-daphne") if s in by]
    paced = [s for s in ours if "paced_p99_ms" in by[s]]
    if raw.get("paced_p99_ms") and paced:
        best = min(paced, key=lambda s: by[s]["paced_p99_ms"])
        ratio = by[best]["paced_p99_ms"] / raw["paced_p99_ms"]
        check("paced: 0 lost and p99 ≤ 3× raw on the faster server",
              by[best]["paced_lost"] == 0 and ratio <= 3,
              f"{best}: p99 {by[best]['paced_p99_ms']:.0f} ms = {ratio:.1f}× raw, "
              f"lost {by[best]['paced_lost']}")
    naive = by.get("naive-daphne", {})
    if naive.get("paced_p99_ms"):
        for s in ("view-daphne", "fast-daphne"):
            if "paced_p99_ms" in by.get(s, {}):
                ratio = by[s]["paced_p99_ms"] / naive["paced_p99_ms"]
                check(f"{s} p99 ≤ 0.5× the naive view's on daphne", ratio <= 0.5, f"{ratio:.2f}×")
    if raw.get("burst_per_s"):
        for s in ours:
            if "burst_per_s" in by[s]:
                ratio = by[s]["burst_per_s"] / raw["burst_per_s"]
                check(f"{s} burst ≥ 0.6× raw, 0 lost", ratio >= 0.6 and by[s]["burst_lost"] == 0,
                      f"{ratio:.2f}×, lost {by[s]['burst_lost']}")
    for s in ("fast-uvicorn", "fast-daphne"):
        r = by.get(s, {})
        if "idle_ok" in r:
            check(f"{s}: {r['idle_clients']} idle clients connected in ≤ 1 s, all 200",
                  r["idle_connect_s"] <= 1 and r["idle_ok"] == r["idle_clients"],
                  f"{r['idle_connect_s']:.2f} s, {r['idle_ok']} × 200")
            check(f"{s}: ≤ 20 KB RSS per idle connection", r["idle_rss_per_conn_kb"] <= 20,
                  f"{r['idle_rss_per_conn_kb']:.1f} KB")
        if "huge_ok" in r:
            check(f"{s}: {r['huge_clients']} concurrent streams all served, connected in ≤ 5 s",
                  r["huge_ok"] == r["huge_clients"] and r["huge_connect_s"] <= 5
                  and r["huge_received"] == r["huge_expected"],
                  f"{r['huge_connect_s']:.2f} s, {r['huge_ok']} served, "
                  f"{r['huge_received']}/{r['huge_expected']} events")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (checks the bench)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--scenarios", default="idle,paced,huge,sync")
    parser.add_argument("--deps", choices=("stdlib", "fast", "both"), default="both",
                        help="without the fast dependency set, with it, or both (bench/deps.py)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--profile", metavar="DIR",
                        help="sample each server with py-spy during the scenarios; summarise")
    parser.add_argument("--size", action="append", default=[], metavar="NAME=VALUE",
                        help="override one size, e.g. --size fan=500 (see Sizes)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    for item in args.size:
        key, _, value = item.partition("=")
        setattr(sizes, key, type(getattr(sizes, key))(value))
    scenarios = set(args.scenarios.split(","))
    if args.deps != "stdlib" and deps.missing():
        parser.error(f"the fast set is not installed ({', '.join(deps.missing())}): "
                     "pip install -e '.[fast]', or --deps stdlib")
    results = []
    for name in with_deps(args.systems.split(","), args.deps):
        print(f"== {name}", file=sys.stderr, flush=True)
        system = system_named(name)
        with override_settings(SSE_EXEC={**settings.SSE_EXEC, "CHANNEL_LAYER": system.layer}):
            result = asyncio.run(bench_system(system, scenarios, sizes, args.profile))
        print(json.dumps(result), file=sys.stderr, flush=True)
        if args.profile:
            print(summarise_profile(f"{args.profile}/{name}.txt"), file=sys.stderr, flush=True)
        results.append(result)
    print(f"\n{len(results)} systems; sizes: {sizes}; Redis {REDIS_URL}, key prefix {PREFIX}\n")
    print(table(results))
    print("\nTargets (ratios against raw in this run):\n")
    print(targets(results))
    if "sync" in scenarios:
        print("\nSync sends:\n")
        print(sync_send_figures(sizes.sync_sends))
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": sizes.__dict__, "results": results}, indent=1))
    print(f"deleted {delete_run_keys()} Redis keys of this run", file=sys.stderr)


if __name__ == "__main__":
    main()
