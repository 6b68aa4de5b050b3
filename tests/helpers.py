"""Helpers every test module would otherwise write again: waiting, naming, a private Redis.

- :func:`wait_until` / :func:`wait_for_value` poll a condition (sync or async)
  on the running loop; :func:`wait_until_sync` does the same from plain sync code.
  Tests wait on conditions with a generous deadline, never sleep-and-assert.
- :func:`wait_count` polls a server's client count of an execution.
- :func:`names` lists the event names of received or logged events.
- :class:`PrivateRedis` is a ``redis-server`` of a test's own, on a free port, that
  the test may kill, restart and wipe (the shared Redis must never be touched).
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Union

from tests.server import free_port

#: A condition to poll: returns a value (truthy when met), or an awaitable of one.
Condition = Callable[[], Union[Any, Awaitable[Any]]]


async def wait_for_value(predicate: Condition, timeout: float = 15, what: str = "condition", *,
                         interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it gives something truthy and return that value.

    Raises ``TimeoutError`` naming ``what`` (and the last value) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


async def wait_until(predicate: Condition, timeout: float = 15, what: str = "condition", *,
                     interval: float = 0.05) -> float:
    """Poll ``predicate`` until it is true; return the seconds it took (``TimeoutError`` after)."""
    started = time.monotonic()
    await wait_for_value(predicate, timeout, what, interval=interval)
    return time.monotonic() - started


def wait_until_sync(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition", *,
                    interval: float = 0.05) -> float:
    """:func:`wait_until` for sync code (no loop): blocks; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - started


async def wait_count(srv: Any, execution_id: str, expected: int, timeout: float = 20) -> float:
    """Poll the count through server ``srv`` until it is ``expected``; return the seconds
    it took."""
    async def reached() -> bool:
        return await asyncio.to_thread(srv.count, execution_id) == expected

    return await wait_until(reached, timeout, interval=0.2, what=f"a count of {expected}")


def names(events: Iterable[Any]) -> list[str]:
    """The event name of each event: an ``SSEEvent``'s ``.event``, or a ``(name, data)``'s name."""
    return [e.event if hasattr(e, "event") else e[0] for e in events]


class PrivateRedis:
    """A redis-server on a free port, in its own directory, that a test may kill and restart."""

    def __init__(self, directory: Path, extra_args: list[str] | None = None) -> None:
        self.port = free_port()
        self.directory = directory
        #: More redis-server arguments, e.g. ``["--replicaof", "127.0.0.1", "6380"]``.
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self) -> Any:
        """A sync redis-py client of this server."""
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=0.5)

    def start(self) -> "PrivateRedis":
        """Start it (again), on the same port and directory; wait until it answers."""
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def wait_for_replicas(self, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` replicas acknowledge this master's writes (``WAIT``).

        A replica reports its link ``up`` once it has loaded the master's data, but the
        master counts it for ``WAIT`` only after the replica's first acknowledgement
        (sent once a second): until then a ``WAIT`` times out with 0.
        """
        client = self.client()
        wait_until_sync(lambda: client.wait(count, 200) >= count, timeout,
                        f"{count} replica(s) acknowledging writes")

    def stop(self, save: bool = False) -> None:
        """Shut it down (``save``: write its data first, so a restart reloads it)."""
        import redis

        if not self.running:
            return
        assert self.proc is not None
        if save:
            try:
                self.client().shutdown(save=True)
            except redis.ConnectionError:
                pass  # it closes the connection as it exits
        else:
            self.proc.kill()
        self.proc.wait(10)


__all__ = ["Condition", "PrivateRedis", "names", "wait_count", "wait_for_value", "wait_until",
           "wait_until_sync"]
