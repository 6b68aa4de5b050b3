"""The Redis store's operations side: leases of running executions and the listing.

Leases live in one sorted set, ``<prefix>:leases`` (execution id -> expiry, ms
of Redis's clock). The listing walks the keyspace with SCAN over the
executions' ``last`` keys: no index to maintain on the send path, and a page
costs a few SCAN round trips plus one pipelined summary per execution.
"""

from __future__ import annotations

from typing import Any

from . import scripts
from .base import ExecutionSummary


class RedisOperations:
    """Leases and listing for :class:`~django_sse_exec.store.redis.RedisStore`."""

    prefix: str
    redis: Any
    history_ttl: float
    closed_ttl: float

    # Provided by the store: client(), key(execution_id, part).

    def _leases_key(self) -> str:
        return f"{self.prefix}:leases"

    async def hold_lease(self, execution_id: str, ttl: float) -> bool:
        if await self.redis.run(self.client().exists(self.key(execution_id, "closed"))):
            await self.release_lease(execution_id)
            return False
        await self.redis.eval(scripts.HOLD_LEASE, [self._leases_key()],
                              [execution_id, max(1, int(ttl * 1000))])
        return True

    async def release_lease(self, execution_id: str) -> None:
        await self.redis.run(self.client().zrem(self._leases_key(), execution_id))

    async def claim_expired_leases(self, grace: float, limit: int = 100) -> list[str]:
        return list(await self.redis.eval(scripts.CLAIM_LEASES, [self._leases_key()],
                                          [max(1, int(grace * 1000)), int(limit)]))

    async def list_executions(self, cursor: str = "0", count: int = 50,
                              search: str = "") -> tuple[list[ExecutionSummary], str]:
        pattern = self.key(f"*{_glob_escape(search)}*" if search else "*", "last")
        head, tail = len(self.prefix) + 2, -len("}:last")
        ids: list[str] = []
        position = int(cursor) if str(cursor).isdigit() else 0
        # An execution has about four keys: ask for about half a page per step, and
        # widen the step while the keyspace around us holds few matches.
        step = 2 * count
        while True:
            position, keys = await self.redis.run(self.client().scan(
                position, match=pattern, count=step))
            ids.extend(key[head:tail] for key in keys)
            if position == 0 or len(ids) >= count:
                break
            if len(ids) < count // 2:
                step = min(step * 2, 10_000)
        return await self._summaries(list(dict.fromkeys(ids))), str(position)

    async def describe_execution(self, execution_id: str) -> ExecutionSummary | None:
        summaries = await self._summaries([execution_id])
        return summaries[0] if summaries else None

    async def _summaries(self, ids: list[str]) -> list[ExecutionSummary]:
        if not ids:
            return []
        client = self.client()
        await self.redis.run(client.script_load(scripts.SUMMARY))
        sha = self.redis.script(scripts.SUMMARY).sha
        async with client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.zmscore(self._leases_key(), ids)
            for execution_id in ids:
                pipe.evalsha(sha, 4, *(self.key(execution_id, part)
                                       for part in ("last", "closed", "events", "members")))
            now, expiries, *rows = await self.redis.run(pipe.execute())
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


def _glob_escape(text: str) -> str:
    """``text`` with SCAN's glob characters escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
