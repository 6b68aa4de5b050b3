"""Redis topologies for tests: several independent hosts, or a Sentinel-managed master.

:class:`SentinelSet` runs a master and replicas (private redis-servers on free
ports) watched by three ``redis-sentinel`` processes with a 1 s down-after
time, so killing the master makes them promote a replica within a few
seconds (and point the other replicas at it). ``server_env`` points the test settings (``tests.settings``) at either
topology.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import PrivateRedis
from tests.server import free_port

#: Sentinel's name of the monitored master.
MASTER_NAME = "sse-exec-master"


def server_env(layer: str, *, urls: list[str] | None = None,
               sentinels: list[int] | None = None, **extra: str) -> dict[str, str]:
    """Environment for servers and senders on several hosts (``urls``) or behind
    ``sentinels`` (their ports), with a key prefix of its own."""
    env = {"TEST_LAYER": layer, "TEST_KEY_PREFIX": f"t{uuid.uuid4().hex[:10]}", **extra}
    if urls:
        env["REDIS_URLS"] = ",".join(urls)
    if sentinels:
        env["TEST_SENTINELS"] = ",".join(f"127.0.0.1:{port}" for port in sentinels)
        env["TEST_SENTINEL_MASTER"] = MASTER_NAME
    return env


class SentinelSet:
    """A master, ``replicas`` replicas and three sentinels, all private; :meth:`stop`
    ends the sentinels (the redis-servers are ``make_redis``'s)."""

    DOWN_AFTER_MS = 1000
    FAILOVER_TIMEOUT_MS = 5000

    def __init__(self, make_redis: Callable[..., PrivateRedis], directory: Path,
                 replicas: int = 1) -> None:
        self.master = make_redis()
        self.replicas = [make_redis(["--replicaof", "127.0.0.1", str(self.master.port)])
                         for _ in range(replicas)]
        self.directory = directory
        self.ports = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> "SentinelSet":
        """Start the sentinels; wait until the replicas are in sync and every sentinel
        knows them and the other sentinels (only then can they fail over)."""
        self._wait(lambda: self.master.client().info("replication").get("connected_slaves")
                   == len(self.replicas) and all(
                       r.client().info("replication").get("master_link_status") == "up"
                       for r in self.replicas), "the replicas to sync")
        self.master.wait_for_replicas(len(self.replicas))
        for port in self.ports:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {self.FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n")
            self.procs.append(subprocess.Popen(["redis-sentinel", str(config)],
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        self._wait(lambda: all(
            int(s["num-slaves"]) == len(self.replicas) and int(s["num-other-sentinels"]) == 2
            for s in (self.sentinel(port).sentinel_master(MASTER_NAME) for port in self.ports)),
            "the sentinels to know the replica and each other")
        return self

    def sentinel(self, port: int) -> Any:
        import redis

        return redis.Redis(port=port, socket_connect_timeout=0.5, decode_responses=True)

    def master_port(self) -> int | None:
        """The master's port as the first answering sentinel sees it."""
        for port in self.ports:
            try:
                return int(self.sentinel(port).sentinel_get_master_addr_by_name(MASTER_NAME)[1])
            except Exception:
                continue
        return None

    def _wait(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}")

    def stop(self) -> None:
        """Stop the sentinels (the redis-servers belong to ``make_redis``'s fixture)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
