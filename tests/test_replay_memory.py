"""Replay is read and written one page at a time: big histories cost bounded memory.

Through a real daphne: readers of a 60 MB history that do not read hold at most
a page each (plus the server's bounded unsent bytes), and a connect that hangs
up at once costs at most about a page of reading, not the whole history.
"""

from __future__ import annotations

import asyncio
import time

import psutil
import pytest
import redis

from tests.http1 import open_socket
from tests.workers import redis_env

EVENTS, EVENT_BYTES = 1000, 60_000
BIG_HISTORY = {"HISTORY_MAX_EVENTS": EVENTS, "HISTORY_MAX_BYTES": 200 * 1024 * 1024,
               "KEEPALIVE": 60, "WRITE_TIMEOUT": 120}


async def fill(srv, execution_id: str) -> None:
    pad = "x" * EVENT_BYTES
    for start in range(0, EVENTS, 20):  # (request bodies stay under Django's 2.5 MB)
        await srv.asend(execution_id, *[("step", {"n": n, "pad": pad})
                                        for n in range(start, start + 20)])


async def open_idle_reader(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream whose client reads the response headers and then nothing more."""
    reader, writer = await open_socket(url, rcvbuf=4096)
    path = url.split("/", 3)[3]
    writer.write(f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader, writer


def settled_rss(pid: int, timeout: float = 60) -> int:
    """The process's RSS once it stops growing (two readings a second apart within 1 MB)."""
    process = psutil.Process(pid)
    previous = process.memory_info().rss
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        current = process.memory_info().rss
        if abs(current - previous) < 1 << 20:
            return current
        previous = current
    return current


@pytest.mark.asyncio
async def test_six_idle_readers_of_a_60_mb_history_hold_bounded_memory(
        make_server, url_for, execution_id):
    srv = make_server("daphne", sse_exec=BIG_HISTORY)
    await fill(srv, execution_id)
    baseline = await asyncio.to_thread(settled_rss, srv.proc.pid)
    readers = [await open_idle_reader(url_for(srv, execution_id)) for _ in range(6)]
    try:
        loaded = await asyncio.to_thread(settled_rss, srv.proc.pid)
        grown = (loaded - baseline) / 2**20
        print(f"\nsix idle readers of a {EVENTS * EVENT_BYTES / 1e6:.0f} MB history: "
              f"server RSS {baseline / 2**20:.0f} -> {loaded / 2**20:.0f} MB (+{grown:.1f} MB)")
        assert grown <= 30, f"RSS grew by {grown:.1f} MB"
    finally:
        for _, writer in readers:
            writer.close()


@pytest.mark.asyncio
async def test_a_connect_that_hangs_up_at_once_reads_about_one_page(
        make_server, url_for, execution_id, requires_redis):
    """On Redis, bytes Redis sent for 20 connects that hang up after the headers:
    about a page each (256 KB), where a whole-history read was 60 MB each."""
    srv = make_server("daphne", env=redis_env(requires_redis), sse_exec=BIG_HISTORY)
    await fill(srv, execution_id)
    raw = redis.Redis.from_url(requires_redis)
    before = raw.info("stats")["total_net_output_bytes"]
    for _ in range(20):
        _, writer = await open_idle_reader(url_for(srv, execution_id))
        writer.transport.abort()
    await asyncio.sleep(2)  # let the server notice and finish what it started
    sent = (raw.info("stats")["total_net_output_bytes"] - before) / 20
    print(f"\nRedis bytes per connect that hung up at once: {sent / 1e3:.0f} KB")
    # Other clients share this Redis; allow for their traffic, far below a full read.
    assert sent < 3 * 256 * 1024 + 200_000, f"{sent / 1e6:.1f} MB per connect"
