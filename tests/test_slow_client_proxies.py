"""A client that never reads is cut off, with bounded queued bytes, in every deployment shape.

daphne applies no backpressure, so the slow-client guard must find the
connection's transport to measure and drop it. These tests open one stream that
never reads a byte (tiny receive buffer), pour ~20 MB of events into its
execution, and require that the server measured the connection, kept its unsent
bytes near ``CLIENT_BUFFER_BYTES`` and dropped it — under daphne with
``--proxy-headers`` (client address from ``X-Forwarded-For``), daphne on a UNIX
socket, daphne terminating TLS, behind a real nginx configured as the deployment
how-to (docs/howto/deployment.md) says
(to daphne over TCP with ``--proxy-headers`` and over a UNIX socket), and under
uvicorn; through the Django view and the ASGI fast path.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from django_sse_exec import stream_url
from django_sse_exec.runtime.daphne_buffer import is_tested_daphne
from tests.conftest import entry_point_env
from tests.helpers import wait_until
from tests.nginx_proxy import Nginx
from tests.server import ROOT, Server, free_port
from tests.sse import SSEClient
from tests.test_faults import MB, RssSampler, report, send_many

LIMIT = 256 * 1024
SETTINGS = {"CLIENT_BUFFER_BYTES": LIMIT, "WRITE_TIMEOUT": 3, "KEEPALIVE": 60}
EVENTS, EVENT_BYTES = 8000, 2500  # ~20 MB for the stream to queue


class Setup:
    """A server (and maybe nginx) and where a client connects to reach its streams."""

    def __init__(self, name: str, srv: Server, target: tuple[str, int] | str,
                 tls: bool = False) -> None:
        self.name, self.srv, self.target, self.tls = name, srv, target, tls


def tls_endpoint(port: int, directory: Path) -> str:
    """A daphne TLS endpoint on ``port`` with a fresh self-signed certificate."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return f"ssl:port={port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"


@pytest.fixture
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    shape, entry = request.param
    env = entry_point_env(entry)
    sock = str(tmp_path / "daphne.sock")
    started: list[Any] = []
    try:
        if shape == "uvicorn":
            srv = Server("uvicorn", env=env, sse_exec=SETTINGS).start()
            started.append(srv)
            yield Setup(f"{shape}-{entry}", srv, ("127.0.0.1", srv.port))
            return
        args = ["-u", sock] if "unix" in shape else ["--proxy-headers"]
        if shape == "daphne-tls":
            tls_port = free_port()
            args = ["-e", tls_endpoint(tls_port, tmp_path)]
        srv = Server("daphne", env=env, sse_exec=SETTINGS, extra_args=args).start()
        started.append(srv)
        if shape == "daphne-tls":
            yield Setup(f"{shape}-{entry}", srv, ("127.0.0.1", tls_port), tls=True)
            return
        if shape.startswith("nginx"):
            upstream = f"unix:{sock}" if "unix" in shape else f"127.0.0.1:{srv.port}"
            proxy = Nginx(upstream, tmp_path / "nginx").start()
            started.append(proxy)
            yield Setup(f"{shape}-{entry}", srv, ("127.0.0.1", proxy.port))
        else:
            yield Setup(f"{shape}-{entry}", srv, sock if "unix" in shape else ("127.0.0.1", srv.port))
    finally:
        for thing in reversed(started):
            thing.stop()


SHAPES = ["daphne-proxy-headers", "daphne-unix", "daphne-tls", "nginx-daphne-proxy-headers",
          "nginx-daphne-unix", "uvicorn"]


class QueueSampler:
    """Samples the largest unsent buffer of any connection of a daphne server."""

    def __init__(self, srv: Server) -> None:
        self.srv, self.most = srv, 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            stats = await asyncio.to_thread(self.srv.hub)
            self.most = max(self.most, stats["server_max_unsent"])
            await asyncio.sleep(0.1)

    async def stop(self) -> int:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        stats = await asyncio.to_thread(self.srv.hub)
        return max(self.most, stats["server_max_unsent"])


async def wait_until_or_none(condition: Any, timeout: float) -> float | None:
    """Seconds until ``condition()`` held, or None if it did not within ``timeout``."""
    try:
        return await wait_until(condition, timeout, what="")
    except (AssertionError, TimeoutError):
        return None


def never_reading(target: tuple[str, int] | str, path: str, tls: bool = False) -> socket.socket:
    """Open a stream and never read from it (a 4 KB receive buffer fills at once).

    It claims a forged ``X-Forwarded-For`` address, as any client can.
    """
    family = socket.AF_UNIX if isinstance(target, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(target)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        sock = context.wrap_socket(sock)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                 f"X-Forwarded-For: 203.0.113.7\r\n\r\n".encode())
    return sock


@pytest.mark.timeout(180)
@pytest.mark.parametrize("setup", [(shape, entry) for shape in SHAPES
                                   for entry in ("view", "fast")],
                         indirect=True, ids=lambda p: f"{p[0]}-{p[1]}")
async def test_never_reading_client_is_cut_off_with_bounded_queue(setup: Setup, execution_id):
    srv = setup.srv
    client = never_reading(setup.target, stream_url(execution_id), setup.tls)
    try:
        await wait_until(lambda: srv.hub()["streams"] == 1, 30, what="stream open")
        measured = srv.hub()["measured"]  # streams whose unsent bytes the guard can see
        rss = RssSampler(srv)
        queued = QueueSampler(srv)
        started = time.monotonic()
        await send_many(srv, execution_id, EVENTS, size=EVENT_BYTES)
        dropped = await wait_until_or_none(lambda: srv.hub()["streams"] == 0, 30)
        growth = await rss.stop()
        most = await queued.stop()
        report(f"never-reading {setup.name}", sent_mb=f"{EVENTS * EVENT_BYTES / MB:.1f}",
               server_max_queued_kb=most // 1024, rss_growth_mb=f"{growth / MB:.1f}",
               dropped_after_send_s="never" if dropped is None else f"{dropped:.1f}",
               total_s=f"{time.monotonic() - started:.1f}")
        # Bytes queued for the client stay near the limit (a stream hands over at
        # most 64 KB pieces); without the guard, all ~20 MB queue up.
        assert most < LIMIT + 4 * 64 * 1024, f"{most / MB:.1f} MB queued for one client"
        assert dropped is not None, "the never-reading stream was never dropped"
        if srv.kind == "daphne":
            assert measured == 1, "the guard did not find the connection"
        assert "dropping a stream" in srv.log()
    finally:
        client.close()
    await asyncio.sleep(0)


@pytest.mark.timeout(120)
async def test_untested_daphne_runs_unguarded_with_a_warning_and_a_check(execution_id):
    """The version gate's fallback: streams still work, nothing of daphne's internals
    is read, the server logs why once, and system check W013 names uvicorn."""
    env = {"TEST_DAPHNE_VERSION": "9.0"}
    with Server("daphne", env=env, sse_exec=SETTINGS) as srv:
        srv.send(execution_id, ("step", {"n": 1}))
        async with SSEClient(srv.base_url + stream_url(execution_id)) as client:
            events = await client.wait_for(lambda ev: len(ev) >= 1)
            assert events[0].event == "step"
            stats = srv.hub()
            assert stats["streams"] == 1 and stats["measured"] == 0
        await wait_until(lambda: "outside the versions the slow-client guard" in srv.log(), 10,
                         what="warning logged")
    check = subprocess.run([sys.executable, "manage.py", "check", "--settings", "tests.settings"],
                           cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                           timeout=120)
    assert "django_sse_exec.W013" in check.stderr + check.stdout
    assert "uvicorn" in check.stderr + check.stdout
    clean = subprocess.run([sys.executable, "manage.py", "check", "--settings", "tests.settings"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "W013" not in clean.stderr + clean.stdout  # the installed daphne is supported


@pytest.mark.parametrize("version, tested", [("4.2.3", True), ("4.2", True), ("4.3.0", False),
                                             ("4.1.2", False), ("5.0", False), ("dev", False),
                                             (None, False)])
def test_daphne_version_gate(version, tested):
    assert is_tested_daphne(version) is tested


def test_connections_are_matched_by_identity_not_by_address():
    """A forged X-Forwarded-For can make a scope's address *equal* to another
    connection's; only the request whose own lists the scope carries matches."""
    from django_sse_exec.runtime.daphne_buffer import request_for_scope

    class Request:  # what daphne keeps per request: hashable, with its own lists
        def __init__(self) -> None:
            self.clean_headers = [(b"host", b"a")]
            self.client_addr = ["10.0.0.1", 5000]

    class FakeServer:
        def __init__(self, *requests: Request) -> None:
            self.connections = {request: {} for request in requests}

    victim, attacker = Request(), Request()
    server = FakeServer(victim, attacker)
    scope = {"headers": attacker.clean_headers, "client": attacker.client_addr}
    assert request_for_scope(server, scope) is attacker
    forged = {"headers": list(victim.clean_headers), "client": list(victim.client_addr)}
    assert request_for_scope(server, forged) is None  # equal values, other objects
    assert request_for_scope(server, {"headers": None, "client": None}) is None
    assert request_for_scope(server, {"headers": victim.clean_headers}) is victim  # UNIX socket
