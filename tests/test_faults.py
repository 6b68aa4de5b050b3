"""Faults through real servers and real sockets: nothing lost, nothing repeated.

Each scenario runs real daphne/uvicorn processes (and, for the Redis ones, a
private ``redis-server`` this module starts and kills), drives them with the
raw-socket load client, and asserts with :func:`tests.loadclient.tally` that
every client ends with every event exactly once, in order. The figures each
scenario measures are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time

import httpx
import pytest

from tests.helpers import PrivateRedis, wait_until
from tests.loadclient import Swarm, tally
from tests.server import Server
from tests.workers import redis_env

pytestmark = pytest.mark.asyncio

MB = 1024 * 1024


def report(name: str, **figures: object) -> None:
    """Print a scenario's figures on one line."""
    print(f"\n[{name}] " + " ".join(f"{k}={v}" for k, v in figures.items()))


async def send_many(srv: Server, execution_id: str, count: int, size: int = 0,
                    batch: int = 500) -> list[int]:
    """Send ``count`` events of about ``size`` bytes of data, in ordered batches."""
    pad = "x" * size
    ids: list[int] = []
    for start in range(0, count, batch):
        ids += await srv.asend(execution_id, *[("step", {"n": n, "pad": pad})
                                               for n in range(start, min(count, start + batch))])
    return ids


class PacedSender:
    """Sends one event every ``every`` seconds through ``srv`` in the background.

    ``ids`` are the ids the sends returned, in order: only those are expected by
    the clients. A send that fails raises in :meth:`stop`, or with ``tolerant`` is
    recorded in ``failures`` and not retried. Use as ``async with``; :meth:`stop`
    ends it earlier.
    """

    def __init__(self, srv: Server, execution_id: str, every: float = 0.02,
                 tolerant: bool = False) -> None:
        self.srv, self.execution_id, self.every, self.tolerant = srv, execution_id, every, tolerant
        self.ids: list[int] = []
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.srv.base_url, timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                try:
                    resp = await client.post("/control/send", json={
                        "execution_id": self.execution_id, "events": [["tick", {"n": n}]]})
                    resp.raise_for_status()
                    self.ids += resp.json()["ids"]
                except httpx.HTTPError as exc:
                    if not self.tolerant:
                        raise
                    self.failures.append(repr(exc))
                n += 1
                await asyncio.sleep(self.every)

    async def __aenter__(self) -> "PacedSender":
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        """Stop sending and wait for the send in flight."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class RssSampler:
    """Samples a server's RSS (and its streams' largest unsent backlog) in the background."""

    def __init__(self, srv: Server, every: float = 0.1) -> None:
        self.srv, self.every = srv, every
        self.baseline = self.peak = srv.rss()
        self.max_unsent = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.srv.rss())
            stats = await asyncio.to_thread(self.srv.hub)
            self.max_unsent = max(self.max_unsent, stats.get("max_unsent", 0))
            await asyncio.sleep(self.every)

    async def stop(self) -> int:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.peak = max(self.peak, self.srv.rss())
        return self.peak - self.baseline


# -- slow and dead clients ------------------------------------------------------


@pytest.mark.heavy  # judges clients by how soon they take bytes (WRITE_TIMEOUT)
@pytest.mark.timeout(240)
async def test_client_that_stops_reading_is_dropped_and_resumes_under_daphne(
        make_server, url_for, execution_id):
    """10k events of 2 KB: four clients stop reading; ten others get everything on time."""
    srv = make_server("daphne", sse_exec={
        "CLIENT_BUFFER_BYTES": 256 * 1024, "WRITE_TIMEOUT": 5, "HISTORY_MAX_EVENTS": 20000,
        "HISTORY_MAX_BYTES": 64 * MB, "KEEPALIVE": 60, "RETRY_MS": 200})
    url = url_for(srv, execution_id)
    async with Swarm([url] * 10) as readers_swarm, \
            Swarm([url] * 4, stall_after=100, rcvbuf=4096) as stalled_swarm:
        readers, stalled = readers_swarm.clients, stalled_swarm.clients
        everyone = readers + stalled
        rss = RssSampler(srv)
        started = time.monotonic()
        ids = await send_many(srv, execution_id, 10_000, size=2000)
        sent_in = time.monotonic() - started
        ids.append(srv.close(execution_id))
        lag = await wait_until(lambda: all(c.finished for c in readers), 60, what="readers done")
        # The stalled clients' streams were dropped, not buffered.
        await wait_until(lambda: srv.hub()["streams"] == 0, 30, what="stalled streams dropped")
        growth = await rss.stop()
        # Unsent bytes per stream stay near the limit (without it: ~20 MB each); RSS
        # grows by the 20 MB log plus bounded buffers (measured ~31-47 MB; ~57 MB without).
        assert rss.max_unsent < 256 * 1024 + 4 * 64 * 1024, rss.max_unsent
        assert growth < 60 * MB, f"server RSS grew by {growth / MB:.1f} MB"
        assert "dropping a stream" in srv.log()
        for client in stalled:
            client.resume()
        await wait_until(lambda: all(c.finished for c in stalled), 60, what="stalled resumed")
        result = tally(everyone, ids)
        assert result.perfect, result
        assert all(len(c.connects) >= 2 for c in stalled)
        report("slow-client daphne", events=len(ids), event_bytes=2000, readers=len(readers),
               stalled=len(stalled), send_s=f"{sent_in:.2f}", readers_done_after_send_s=f"{lag:.2f}",
               rss_growth_mb=f"{growth / MB:.1f}", max_unsent_kb=rss.max_unsent // 1024,
               lost=result.lost, duplicated=result.duplicated)


@pytest.mark.timeout(180)
async def test_client_that_stops_reading_is_dropped_and_resumes_under_uvicorn(
        make_server, url_for, execution_id):
    """Under uvicorn the write itself blocks: the write deadline and event buffer end it."""
    srv = make_server("uvicorn", sse_exec={
        "WRITE_TIMEOUT": 2, "CLIENT_BUFFER": 200, "HISTORY_MAX_EVENTS": 20000,
        "HISTORY_MAX_BYTES": 64 * MB, "KEEPALIVE": 60, "RETRY_MS": 200})
    url = url_for(srv, execution_id)
    async with Swarm([url] * 3) as readers_swarm, \
            Swarm([url] * 2, stall_after=10, rcvbuf=4096) as stalled_swarm:
        readers, stalled = readers_swarm.clients, stalled_swarm.clients
        everyone = readers + stalled
        rss = RssSampler(srv)
        ids = await send_many(srv, execution_id, 5000, size=2000)
        await wait_until(lambda: all(len(c.events) >= 5000 for c in readers), 60, what="readers")
        dropped_in = await wait_until(lambda: srv.hub()["streams"] == len(readers), 30,
                                      what="stalled streams dropped")
        growth = await rss.stop()
        ids.append(srv.close(execution_id))
        for client in stalled:
            client.resume()
        await wait_until(lambda: all(c.finished for c in everyone), 60, what="all done")
        result = tally(everyone, ids)
        assert result.perfect, result
        assert all(len(c.connects) >= 2 for c in stalled)
        report("slow-client uvicorn", events=len(ids), stalled=len(stalled),
               dropped_after_send_s=f"{dropped_in:.2f}", rss_growth_mb=f"{growth / MB:.1f}",
               lost=result.lost, duplicated=result.duplicated)


# -- graceful shutdown ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
@pytest.mark.timeout(120)
async def test_sigterm_ends_every_stream_within_two_seconds_with_a_retry_hint(
        make_server, url_for, execution_id, kind):
    srv = make_server(kind, sse_exec={"RETRY_MS": 500, "RETRY_JITTER_MS": 500, "KEEPALIVE": 60})
    async with Swarm([url_for(srv, execution_id)] * 50, reconnect=False) as swarm:
        clients = swarm.clients
        ids = await send_many(srv, execution_id, 20)
        await wait_until(lambda: all(len(c.events) == 20 for c in clients), 30, what="events")
        assert srv.proc is not None
        signalled = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        ended_in = await wait_until(lambda: all(c.connects[-1].ended for c in clients), 10,
                                    interval=0.01, what="streams ended")
        exit_in = await asyncio.to_thread(srv.proc.wait, 10)
        exited_after = time.monotonic() - signalled
        assert ended_in < 2.0
        for client in clients:
            last = client.connects[-1]
            assert last.ended == "eof", last
            assert "reconnect (shutdown)" in last.comments, last.comments
        hints = {c.retry_ms for c in clients}
        assert all(500 <= h <= 1000 for h in hints) and len(hints) > 1, hints
        assert tally(clients, ids).perfect
        report(f"shutdown {kind}", streams=len(clients), all_ended_s=f"{ended_in:.2f}",
               process_exited_s=f"{exited_after:.2f}", exit_code=exit_in,
               distinct_retry_hints=len(hints))


# -- maximum lifetime ---------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_streams_are_rotated_after_their_jittered_lifetime_without_loss(
        make_server, url_for, execution_id):
    srv = make_server("daphne", sse_exec={
        "MAX_STREAM_LIFETIME": 2.0, "MAX_STREAM_LIFETIME_JITTER": 0.5, "RETRY_MS": 100,
        "RETRY_JITTER_MS": 200, "KEEPALIVE": 60})
    async with Swarm([url_for(srv, execution_id)] * 20) as swarm, \
            PacedSender(srv, execution_id) as sender:
        clients, ids = swarm.clients, sender.ids
        await wait_until(lambda: all(len(c.connects) >= 3 for c in clients), 30, what="rotations")
        await sender.stop()
        ids.append(srv.close(execution_id))
        await wait_until(lambda: all(c.finished for c in clients), 30, what="all done")
        result = tally(clients, ids)
        assert result.perfect, result
        rotated = [k for c in clients for k in c.connects[:-1]]
        assert all(k.ended == "eof" and "reconnect (lifetime)" in k.comments for k in rotated)
        lifetimes = [k.finished - k.started for k in rotated]
        # 1-2 s of lifetime, rotated at the hub's next check (REPAIR_INTERVAL = 1 s).
        assert all(0.8 <= t <= 4.5 for t in lifetimes), lifetimes
        assert max(lifetimes) - min(lifetimes) > 0.3, lifetimes  # jitter spreads them
        report("lifetime", clients=len(clients), events=len(ids), rotations=len(rotated),
               lifetime_min_s=f"{min(lifetimes):.2f}", lifetime_max_s=f"{max(lifetimes):.2f}",
               lost=result.lost, duplicated=result.duplicated)


# -- reconnect storm ------------------------------------------------------------------


@pytest.mark.heavy  # 2,000 clients reconnecting at once: it loads the machine itself
@pytest.mark.timeout(300)
async def test_two_thousand_clients_dropped_at_once_all_resume_without_loss(
        make_server, url_for, execution_id):
    srv = make_server("daphne", sse_exec={"RETRY_MS": 200, "RETRY_JITTER_MS": 2000,
                                          "KEEPALIVE": 60})
    count = 2000
    async with Swarm([url_for(srv, execution_id)] * count, connect_timeout=120) as swarm, \
            PacedSender(srv, execution_id, every=0.05) as sender:
        clients, connected_in, ids = swarm.clients, swarm.connected_in, sender.ids
        stats = srv.hub()
        assert stats["streams"] == stats["measured"] == count  # every connection's backlog found
        await wait_until(lambda: len(ids) >= 10, 30, what="first events")
        dropped_at = time.monotonic()
        for client in clients:
            client.drop()
        back_in = await wait_until(lambda: all(len(c.connects) >= 2 and c.connected
                                               for c in clients), 120, what="reconnects")
        await asyncio.sleep(0.5)
        await sender.stop()
        ids.append(srv.close(execution_id))
        await wait_until(lambda: all(c.finished for c in clients), 120, what="all done")
        result = tally(clients, ids)
        assert result.perfect, result
        delays = sorted(c.connects[1].started - dropped_at for c in clients)
        assert delays[-1] - delays[0] > 1.0, "reconnects were not spread by the jitter"
        report("reconnect storm", clients=count, connect_all_s=f"{connected_in:.2f}",
               all_back_s=f"{back_in:.2f}", first_reconnect_s=f"{delays[0]:.2f}",
               last_reconnect_s=f"{delays[-1]:.2f}", events=len(ids), lost=result.lost,
               duplicated=result.duplicated, out_of_order=result.out_of_order)


# -- with Redis: a private redis-server this module can kill and restart -----------


def private_env(private: PrivateRedis) -> dict[str, str]:
    """Servers on ``private`` with the core layer and a key prefix of their own."""
    return redis_env(private.url, "redis")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
@pytest.mark.timeout(180)
async def test_web_process_killed_or_stopped_clients_resume_on_another_exactly_once(
        make_server, url_for, execution_id, private_redis, sig):
    """A sender keeps sending through one process while the one serving the streams goes."""
    env = private_env(private_redis)
    options = {"HEARTBEAT": 1, "RETRY_MS": 200, "RETRY_JITTER_MS": 300, "KEEPALIVE": 60}
    doomed = make_server("daphne", env=env, sse_exec=options)
    survivor = make_server("daphne", env=env, sse_exec=options)
    async with Swarm([url_for(doomed, execution_id)] * 50,
                     alternates=[url_for(survivor, execution_id)]) as swarm, \
            PacedSender(survivor, execution_id) as sender:
        clients, ids = swarm.clients, sender.ids
        assert survivor.count(execution_id) == 50  # membership is shared through Redis
        await wait_until(lambda: len(ids) >= 20, 30, what="first events")
        killed = time.monotonic()
        doomed.stop(sig)
        back_in = await wait_until(lambda: all(len(c.connects) >= 2 and c.connected
                                               for c in clients), 30, what="reconnects")
        # The dead process's 50 entries expire (3 missed heartbeats) or were removed
        # (SIGTERM); the survivor's 50 stay.
        await wait_until(lambda: survivor.count(execution_id) == 50, 20, interval=0.2,
                         what="dead process's membership expired")
        expired_in = time.monotonic() - killed
        await asyncio.sleep(0.5)
        await sender.stop()
        ids.append(survivor.close(execution_id))
        await wait_until(lambda: all(c.finished for c in clients), 30, what="all done")
        result = tally(clients, ids)
        assert result.perfect, result
        report(signal.Signals(sig).name, clients=len(clients), events=len(ids), all_back_s=f"{back_in:.2f}",
               membership_expired_s=f"{expired_in:.2f}", lost=result.lost,
               duplicated=result.duplicated, out_of_order=result.out_of_order)


@pytest.mark.timeout(180)
async def test_redis_restart_mid_stream_streams_resume_and_sends_fail_fast(
        make_server, url_for, execution_id, private_redis, settings):
    env = private_env(private_redis)
    srv = make_server("daphne", env=env, sse_exec={
        "HEARTBEAT": 1, "REPAIR_INTERVAL": 0.5, "KEEPALIVE": 60, "RETRY_MS": 200})
    async with Swarm([url_for(srv, execution_id)] * 20) as swarm, \
            PacedSender(srv, execution_id, every=0.05, tolerant=True) as sender:
        clients, ids, failures = swarm.clients, sender.ids, sender.failures
        await wait_until(lambda: len(ids) >= 20, 30, what="first events")
        private_redis.stop(save=True)
        down_at = time.monotonic()
        # While Redis is down, the public API raises StoreUnavailable, quickly.
        settings.CHANNEL_LAYERS = {"default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": private_redis.url, "socket_timeout": 5}]}}}
        settings.SSE_EXEC = {"STORE": "redis", "REDIS_URL": private_redis.url,
                             "KEY_PREFIX": env["TEST_KEY_PREFIX"]}
        from django_sse_exec import StoreUnavailable, send_sse_event

        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await asyncio.to_thread(send_sse_event, execution_id, "while-down", {"n": 0})
        raised_in = time.monotonic() - started
        assert raised_in < 10
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - down_at)))
        private_redis.start()
        down_for = time.monotonic() - down_at
        before = len(ids)
        resumed_in = await wait_until(lambda: len(ids) >= before + 20, 30, interval=0.1,
                                      what="sends succeed again")
        await wait_until(lambda: all(c.ids[-1:] == ids[-1:] for c in clients), 30,
                         what="streams caught up")
        await sender.stop()
        ids.append(srv.close(execution_id))
        await wait_until(lambda: all(c.finished for c in clients), 30, what="all done")
        result = tally(clients, ids)
        assert result.perfect, result
        assert all(len(c.connects) == 1 for c in clients)  # streams survived, no reconnect
        assert srv.count(execution_id) == 0
        report("redis restart", clients=len(clients), events=len(ids),
               redis_down_s=f"{down_for:.2f}", sends_failed=len(failures),
               send_raised_after_s=f"{raised_in:.2f}",
               sends_ok_again_after_restart_s=f"{resumed_in:.2f}", lost=result.lost,
               duplicated=result.duplicated)


@pytest.mark.timeout(60)
async def test_send_to_a_redis_that_never_answers_raises_store_unavailable_in_bounded_time(
        requires_redis, execution_id, settings):
    """A black-holed Redis (TCP accepts, nothing answers): the send gives up, it does not hang."""
    from django_sse_exec import StoreUnavailable, send_sse_event

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes handshakes; nobody ever reads or replies
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        settings.CHANNEL_LAYERS = {"default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url, "socket_timeout": 5}]}}}
        settings.SSE_EXEC = {"STORE": "redis", "REDIS_URL": url}
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            await asyncio.to_thread(send_sse_event, execution_id, "step", {"n": 1})
        took = time.monotonic() - started
    assert took < 15, took
    assert "unavailable" in str(raised.value)
    report("send while redis hangs", raised_after_s=f"{took:.2f}", error=type(raised.value).__name__)


@pytest.mark.timeout(120)
async def test_redis_restarted_without_its_data_streams_recover(
        make_server, url_for, execution_id, private_redis):
    """A Redis that lost everything: memberships come back, streams restart on the new log.

    The web process knew the store's epoch, so the new log starts a new one (its
    ids start past every old id): open streams see the jump, read the log and
    send ``stream-reset`` and the new events.
    """
    env = private_env(private_redis)
    srv = make_server("daphne", env=env, sse_exec={"HEARTBEAT": 1, "REPAIR_INTERVAL": 0.5,
                                                   "KEEPALIVE": 60, "RETRY_MS": 200})
    async with Swarm([url_for(srv, execution_id)] * 20) as swarm:
        clients = swarm.clients
        assert srv.count(execution_id) == 20
        assert await send_many(srv, execution_id, 5) == [1, 2, 3, 4, 5]
        await wait_until(lambda: all(len(c.events) == 5 for c in clients), 30, what="events")
        private_redis.stop()  # killed: nothing saved
        private_redis.start()
        restarted = time.monotonic()
        assert private_redis.client().dbsize() == 0
        await wait_until(lambda: srv.count(execution_id) == 20, 30, interval=0.2,
                         what="memberships restored")
        restored_in = time.monotonic() - restarted
        new = await send_many(srv, execution_id, 3)  # the new log, in a new epoch
        base = new[0] - 1
        assert base >= 1_000_000 and new == [base + 1, base + 2, base + 3]
        closed = srv.close(execution_id)
        await wait_until(lambda: all(c.finished for c in clients), 30, what="all done")
        for client in clients:
            names = [e.event for e in client.events]
            assert names.count("stream-reset") == 1, names
            after = client.events[names.index("stream-reset") + 1:]
            assert [e.int_id for e in after] == [*new, closed], names
        report("redis restart without data", streams=len(clients),
               memberships_restored_s=f"{restored_in:.2f}",
               reconnects=sum(len(c.connects) - 1 for c in clients))
