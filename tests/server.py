"""Start real ASGI servers (daphne, uvicorn) as subprocesses on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


#: Ports for the tests' servers: below the kernel's ephemeral range (32768 and up on
#: Linux), where the thousands of client sockets of the load tests take theirs, and
#: split between pytest-xdist workers (``gw0``, ``gw1``, ...), so a port one worker
#: freed (a killed Redis master, a restarted server) is never another's next server.
#: Test runs at the same time (`make test-matrix`) each set ``TEST_PORTS_FIRST``.
PORTS_FIRST = int(os.environ.get("TEST_PORTS_FIRST", "12000"))
PORTS_PER_WORKER = 1000
_next_port = 0


def free_port() -> int:
    """A port no other test process will hand out, free when asked."""
    global _next_port
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = PORTS_FIRST + (int(worker) % 8 if worker.isdigit() else 0) * PORTS_PER_WORKER
    for _ in range(PORTS_PER_WORKER):
        port = first + _next_port % PORTS_PER_WORKER
        _next_port += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}..{first + PORTS_PER_WORKER - 1}")


def wait_until_serving(proc: subprocess.Popen[bytes], url: str, timeout: float,
                       describe: Any) -> None:
    """Poll ``url`` until it answers; RuntimeError with ``describe()`` if ``proc`` exits
    or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited: {describe()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    stop_process(proc)  # a server that did not answer in time must not outlive the test
    raise RuntimeError(f"did not start: {describe()}")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                 timeout: float = 10) -> None:
    """Send ``sig``; kill the process if it has not exited after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Server:
    """An ASGI server process serving ``tests.settings`` on 127.0.0.1."""

    def __init__(self, kind: str = "daphne", env: dict[str, str] | None = None,
                 sse_exec: dict[str, Any] | None = None, port: int | None = None,
                 app: str = "example_project.asgi:application",
                 extra_args: list[str] | None = None) -> None:
        self.kind = kind
        self.extra_args = list(extra_args or [])  # e.g. daphne's --proxy-headers, -u <path>
        self.port = port or free_port()
        self.app = app
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        if sse_exec:
            self.env["SSE_EXEC_JSON"] = json.dumps(sse_exec)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TEST_LOG_DIR", "/tmp")) / f"server-{kind}-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.kind == "daphne":
            return [str(VENV_BIN / "daphne"), "-e",
                    f"tcp:port={self.port}:interface=127.0.0.1:backlog=4096",
                    *self.extra_args, self.app]
        if self.kind == "uvicorn":
            return [str(VENV_BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(self.port),
                    "--backlog", "4096", "--timeout-graceful-shutdown", "2", "--log-level",
                    "warning", *self.extra_args, self.app]
        raise ValueError(self.kind)

    def start(self, timeout: float = 60) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        wait_until_serving(self.proc, self.base_url + "/control/hub", timeout,
                           lambda: f"{self.kind}: {self.log_path.read_text()[-2000:]}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_process(self.proc, sig, timeout)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        import psutil

        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss

    # -- driving the server through its control endpoints ---------------------

    def send(self, execution_id: str, *events: tuple[str, Any], sync: bool = False) -> list[int]:
        path = "/control/sync-send" if sync else "/control/send"
        resp = httpx.post(self.base_url + path, timeout=30,
                          json={"execution_id": execution_id, "events": [list(e) for e in events]})
        resp.raise_for_status()
        return resp.json()["ids"]

    async def asend(self, execution_id: str, *events: tuple[str, Any]) -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(self.base_url + "/control/send", json={
                "execution_id": execution_id, "events": [list(e) for e in events]})
        resp.raise_for_status()
        return resp.json()["ids"]

    async def script(self, ops: list[list[Any]], http: httpx.AsyncClient | None = None) -> list[int]:
        """Run ``ops`` in the server, in order, in one request (see the ``script`` view):
        ``["send", id, event, data]``, ``["fill", id, count, size]``, ``["add", feed, id]``,
        ``["close", id]``; their ids.

        ``http``: a client to reuse (making one costs tens of milliseconds)."""
        if http is None:
            async with httpx.AsyncClient(timeout=60) as client:
                return await self.script(ops, client)
        resp = await http.post(self.base_url + "/control/script", json={"ops": ops}, timeout=60)
        resp.raise_for_status()
        return resp.json()["ids"]

    def close(self, execution_id: str) -> int:
        resp = httpx.post(self.base_url + "/control/close", json={"execution_id": execution_id},
                          timeout=30)
        resp.raise_for_status()
        return resp.json()["id"]

    def feed_add(self, feed: str, execution_id: str) -> int:
        resp = httpx.post(self.base_url + "/control/feed-add", timeout=30,
                          json={"feed": feed, "execution_id": execution_id})
        resp.raise_for_status()
        return resp.json()["id"]

    def count(self, execution_id: str) -> int:
        return httpx.get(f"{self.base_url}/control/count/{execution_id}", timeout=30).json()["count"]

    def hub(self) -> dict[str, int]:
        return httpx.get(f"{self.base_url}/control/hub", timeout=30).json()

    def objects(self) -> int:
        """Objects the server's garbage collector tracks, after a full collection."""
        return int(httpx.get(f"{self.base_url}/control/objects", timeout=30).json()["objects"])

    def residue(self) -> dict[str, int]:
        """Per-execution state outside the hub: in-memory store and layer (see the view)."""
        return httpx.get(f"{self.base_url}/control/residue", timeout=30).json()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
