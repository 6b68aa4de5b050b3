"""The Redis store's operations side: leases and stalls of running executions, cancel
requests, and the listing.

Stalls are watched in two sorted sets per host, ``<prefix>:activity`` and
``<prefix>:stalled`` (see :mod:`.scripts`): the append script keeps them, and
:meth:`RedisOperations.claim_stalled` hands out the silent executions.

Leases live in a sorted set, ``<prefix>:leases`` (execution id -> expiry, ms
of Redis's clock), one per host: an execution's lease is on the host of its
other keys, and claiming asks every host. The listing walks the keyspace with
SCAN over the executions' ``last`` keys, host after host (the cursor is
``<host index>.<SCAN cursor>``): no index to maintain on the send path, and a
page costs a few SCAN round trips plus one pipelined summary per execution.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from . import scripts
from .base import ExecutionSummary


class RedisOperations:
    """Leases and listing for :class:`~django_sse_exec.store.redis.RedisStore`."""

    prefix: str
    connections: Any  # list of the hosts' Connections
    history_ttl: float
    closed_ttl: float
    stall_after: float | None

    # Provided by the store.
    on: Callable[[str], Any]
    on_each_host: Callable[..., Any]
    key: Callable[[str, str], str]

    async def ping(self) -> None:
        await asyncio.gather(*(host.run(host.client().ping()) for host in self.connections))

    async def cancel_requested(self, execution_id: str) -> bool:
        host = self.on(execution_id)
        return bool(await host.run(host.client().exists(self.key(execution_id, "cancel"))))

    async def claim_stalled(self, limit: int = 100) -> list[tuple[str, float]]:
        """Claimed on every host at once (see :meth:`Store.claim_stalled`)."""
        if not self.stall_after:
            return []
        keys = [f"{self.prefix}:activity", f"{self.prefix}:stalled"]
        args = [int(self.stall_after * 1000), int(limit), int(self.history_ttl * 1000)]
        claims = await asyncio.gather(*(host.eval(scripts.CLAIM_STALLED, keys, args)
                                        for host in self.connections))
        return [(str(rows[i]), float(rows[i + 1]) / 1000)
                for rows in claims for i in range(0, len(rows), 2)]

    def _leases_key(self) -> str:
        return f"{self.prefix}:leases"

    async def hold_lease(self, execution_id: str, ttl: float) -> bool:
        host = self.on(execution_id)
        if await host.run(host.client().exists(self.key(execution_id, "closed"))):
            await self.release_lease(execution_id)
            return False
        await host.eval(scripts.HOLD_LEASE, [self._leases_key()],
                        [execution_id, max(1, int(ttl * 1000))])
        return True

    async def release_lease(self, execution_id: str) -> None:
        host = self.on(execution_id)
        await host.run(host.client().zrem(self._leases_key(), execution_id))

    async def claim_expired_leases(self, grace: float, limit: int = 100) -> list[str]:
        """Claimed on every host at once; a host that is down raises (the sweep retries)."""
        claims = await asyncio.gather(*(
            host.eval(scripts.CLAIM_LEASES, [self._leases_key()],
                      [max(1, int(grace * 1000)), int(limit)]) for host in self.connections))
        return [execution_id for claimed in claims for execution_id in claimed]

    async def list_executions(self, cursor: str = "0", count: int = 50,
                              search: str = "") -> tuple[list[ExecutionSummary], str]:
        pattern = self.key(f"*{_glob_escape(search)}*" if search else "*", "last")
        head, tail = len(self.prefix) + 2, -len("}:last")
        ids: list[str] = []
        index, position = _parse_cursor(cursor, len(self.connections))
        # An execution has about four keys: ask for about half a page per step, and
        # widen the step while the keyspace around us holds few matches.
        step = 2 * count
        while True:
            host = self.connections[index]
            position, keys = await host.run(host.client().scan(
                position, match=pattern, count=step))
            # Feeds' own logs (ids starting with "_") are not executions.
            ids.extend(key[head:tail] for key in keys if key[head:head + 1] != "_")
            if position == 0:
                index, position = index + 1, 0
                if index == len(self.connections):
                    index = 0
                    break
            if len(ids) >= count:
                break
            if len(ids) < count // 2:
                step = min(step * 2, 10_000)
        following = "0" if (index, position) == (0, 0) else f"{index}.{position}"
        return await self._summaries(list(dict.fromkeys(ids))), following

    async def describe_execution(self, execution_id: str) -> ExecutionSummary | None:
        summaries = await self._summaries([execution_id])
        return summaries[0] if summaries else None

    async def _summaries(self, ids: list[str]) -> list[ExecutionSummary]:
        """Summaries of ``ids`` (one pipeline per host, concurrently), in ``ids`` order."""
        found: dict[str, ExecutionSummary] = {}
        for part in await self.on_each_host(ids, lambda e: e, self._summaries_on):
            found.update((summary.execution_id, summary) for summary in part)
        return [found[execution_id] for execution_id in ids if execution_id in found]

    async def _summaries_on(self, host: Any, ids: list[str]) -> list[ExecutionSummary]:
        client = host.client()
        await host.run(client.script_load(scripts.SUMMARY))
        sha = host.script(scripts.SUMMARY).sha
        async with client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.zmscore(self._leases_key(), ids)
            for execution_id in ids:
                pipe.evalsha(sha, 4, *(self.key(execution_id, part)
                                       for part in ("last", "closed", "events", "members")))
            now, expiries, *rows = await host.run(pipe.execute())
        now_ms = now[0] * 1000 + now[1] // 1000
        result = []
        for execution_id, expiry, row in zip(ids, expiries, rows):
            last, closed, pttl, last_event, start, viewers = row
            if not int(last):
                continue  # expired between the scan and the summary
            ttl = self.closed_ttl if int(closed) else self.history_ttl
            idle = max(0.0, ttl - int(pttl) / 1000) if int(pttl) >= 0 else None
            result.append(ExecutionSummary(
                execution_id, int(last), bool(int(closed)), int(viewers), idle,
                last_event or "", start or None, expiry is not None and float(expiry) > now_ms))
        return result


def _parse_cursor(cursor: str, hosts: int) -> tuple[int, int]:
    """``(host index, SCAN cursor)`` of a listing cursor; garbage starts over."""
    index, _, position = str(cursor).rpartition(".")
    if not position.isdigit() or (index and not index.isdigit()):
        return 0, 0
    host = int(index or 0)
    return (host, int(position)) if host < hosts else (0, 0)


def _glob_escape(text: str) -> str:
    """``text`` with SCAN's glob characters escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
