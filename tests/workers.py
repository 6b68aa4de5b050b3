"""Real processes besides the servers: a Celery worker and a plain sender process.

``redis_env`` gives the environment that points a server, worker or sender at
one Redis with a channels_redis layer and a key prefix of its own (so runs never
collide); ``run_sender`` runs a short script with the sync helpers in a fresh
process; ``CeleryWorker`` starts a real Celery worker as a subprocess, isolated
on its own queue.

The worker runs the example project's Celery app with ``tests.settings`` (so the
channel layer and event store are selected by the same ``TEST_LAYER`` /
``REDIS_URL`` / ``TEST_KEY_PREFIX`` variables as the test servers) and Redis as
broker. Each worker consumes a queue of its own, so concurrent test runs on the
same Redis never take each other's tasks. Use it as a context manager::

    with CeleryWorker(redis_url, env={"TEST_KEY_PREFIX": prefix}) as worker:
        result = worker.send_task("demo.run_execution", args=[execution_id])
        result.get(timeout=30)          # needs result_backend=True
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

from tests.server import ROOT, VENV_BIN


def redis_env(redis_url: str, layer: str = "redis", prefix: str | None = None,
              **extra: str) -> dict[str, str]:
    """Environment for ``tests.settings`` on Redis: ``layer`` is "redis" (core) or "pubsub".

    ``prefix`` (default: a new unique one) prefixes every Redis key and group.
    """
    return {"TEST_LAYER": layer, "REDIS_URL": redis_url,
            "TEST_KEY_PREFIX": prefix or f"t{uuid.uuid4().hex[:10]}", **extra}


def delete_keys(redis_url: str, prefix: str) -> None:
    """Remove every key a run with ``prefix`` left in Redis (store and channel layer)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for pattern in (f"{prefix}:*", f"asgi_{prefix}*"):
            keys = list(client.scan_iter(pattern, count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start:start + 500])
    finally:
        client.close()


def run_sender(env: dict[str, str], code: str, timeout: float = 60) -> Any:
    """Run ``code`` in a fresh Django process (``tests.settings`` + ``env``).

    The code can use ``sse`` (the public API) and ``emit(value)``; the last value
    emitted is returned (JSON round trip). Raises with the output on failure.
    """
    script = "import json, django\ndjango.setup()\nimport django_sse_exec as sse\n" \
             "def emit(value):\n    print('RESULT ' + json.dumps(value), flush=True)\n" \
             + textwrap.dedent(code)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT),
             **env})
    if proc.returncode != 0:
        raise RuntimeError(f"sender failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    results = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(results[-1]) if results else None


class CeleryWorker:
    """One ``celery worker`` process with Redis as broker and a unique queue."""

    def __init__(self, redis_url: str, *, env: dict[str, str] | None = None,
                 sse_exec: dict[str, Any] | None = None, app: str = "example_project",
                 pool: str = "prefork", concurrency: int = 1,
                 result_backend: bool = False) -> None:
        self.redis_url = redis_url
        self.app = app
        self.pool = pool
        self.concurrency = concurrency
        self.name = f"w{uuid.uuid4().hex[:12]}"
        self.queue = f"tests.{self.name}"
        self.result_backend = redis_url if result_backend else None
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
                    "PYTHONUNBUFFERED": "1", "TEST_LAYER": "redis", "REDIS_URL": redis_url,
                    **(env or {})}
        if sse_exec:
            self.env["SSE_EXEC_JSON"] = json.dumps(sse_exec)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TEST_LOG_DIR", "/tmp")) / f"celery-{self.name}.log"
        self._client: Any = None

    def command(self) -> list[str]:
        cmd = [str(VENV_BIN / "celery"), "-A", self.app, "-b", self.redis_url]
        if self.result_backend:
            cmd += ["--result-backend", self.result_backend]
        return cmd + ["worker", "-Q", self.queue, "-n", f"{self.name}@%h", "-P", self.pool,
                      "-c", str(self.concurrency), "-l", "info", "--without-gossip",
                      "--without-mingle", "--without-heartbeat"]

    def start(self, timeout: float = 60) -> "CeleryWorker":
        """Start the worker and wait until it reports ready."""
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log()[-3000:]}")
            if " ready." in self.log():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"celery worker did not become ready: {self.log()[-3000:]}")

    def client(self) -> Any:
        """A Celery app that publishes to this worker's broker (not the Django settings')."""
        if self._client is None:
            from celery import Celery

            self._client = Celery(f"client-{self.name}", broker=self.redis_url,
                                  backend=self.result_backend)
        return self._client

    def send_task(self, name: str, args: list[Any] | None = None,
                  kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Queue task ``name`` for this worker (``options`` as Celery's ``send_task`` takes
        them, e.g. ``headers``); returns its ``AsyncResult``."""
        return self.client().send_task(name, args=args, kwargs=kwargs, queue=self.queue,
                                       **options)

    def stop(self, timeout: float = 15) -> None:
        """Warm shutdown (SIGTERM), then kill the whole process group if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> "CeleryWorker":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
