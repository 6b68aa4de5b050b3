"""Time the admin page of live executions with many executions in the store.

Fills a store with ``-n`` executions (a tenth of them closed, each with a few
events, one stream member on every tenth), then times, over ``--rounds`` rounds
each: the store's first page (``list_executions``), a search page, one
``describe_execution``, a walk over every page, and the whole admin list page
rendered by Django (test client, logged-in staff, no network). Redis keys use a
unique prefix and are deleted afterwards. Usage::

    .venv/bin/python bench/admin_listing.py -n 10000               # Redis and memory
    .venv/bin/python bench/admin_listing.py -n 10000 --store redis
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PREFIX = f"bench_admin_{uuid.uuid4().hex[:8]}"


def setup(store: str) -> None:
    os.environ.update({"DJANGO_SETTINGS_MODULE": "tests.settings", "TEST_KEY_PREFIX": PREFIX,
                       "TEST_LAYER": "redis" if store == "redis" else "memory"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


async def fill(n: int) -> None:
    from django_sse_exec.store import get_store

    store = get_store()
    start = f'{{"executionId":"x","totalTasks":3,"startTime":{int(time.time() * 1000)}}}'
    batch = []
    for i in range(n):
        execution_id = f"exec-{i:06d}"
        batch.append(_one(store, execution_id, start, closed=i % 10 == 0, member=i % 10 == 5))
        if len(batch) == 200:
            await asyncio.gather(*batch)
            batch = []
    await asyncio.gather(*batch)


async def _one(store: Any, execution_id: str, start: str, closed: bool, member: bool) -> None:
    await store.append(execution_id, "execution-start", start)
    await store.append(execution_id, "task-start", '{"taskId":"t1"}')
    if member:
        await store.add_member(execution_id, "bench-member")
    if closed:
        await store.close(execution_id)


async def timed(func: Callable[[], Awaitable[Any]], rounds: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = await func()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


async def measure(n: int, rounds: int) -> dict[str, Any]:
    from django_sse_exec.store import get_store

    store = get_store()
    started = time.perf_counter()
    await fill(n)
    filled = time.perf_counter() - started
    first_ms, (page, _) = await timed(lambda: store.list_executions("0", 50), rounds)
    search_ms, (found, _) = await timed(lambda: store.list_executions("0", 50, "exec-0012"),
                                        rounds)
    describe_ms, _ = await timed(lambda: store.describe_execution("exec-000123"), rounds)

    async def walk() -> int:
        cursor, seen = "0", set()
        while True:
            page, cursor = await store.list_executions(cursor, 50)
            seen.update(s.execution_id for s in page)
            if cursor == "0":
                return len(seen)

    walk_ms, total = await timed(walk, max(1, rounds // 5))
    return {"filled_s": filled, "first_page_ms": first_ms, "page_rows": len(page),
            "search_ms": search_ms, "search_rows": len(found), "describe_ms": describe_ms,
            "walk_all_ms": walk_ms, "walked": total}


def admin_page_ms(rounds: int) -> float:
    from django.contrib.auth.models import Permission, User
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="django_sse_exec"))
    client = Client()
    client.force_login(user)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        resp = client.get("/admin/django_sse_exec/execution/")
        times.append((time.perf_counter() - started) * 1000)
        assert resp.status_code == 200 and b"execution-row" in resp.content
    return statistics.median(times)


def cleanup() -> None:
    from django_sse_exec.store import get_store

    store = get_store()
    client = getattr(store, "blocking_client", None)
    if client is None:
        return
    redis = client()
    keys = list(redis.scan_iter(f"{PREFIX}:*", count=1000))
    for start in range(0, len(keys), 500):
        redis.delete(*keys[start:start + 500])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--store", choices=["redis", "memory"], default="redis")
    args = parser.parse_args()
    setup(args.store)
    from django_sse_exec.runtime.sync import run_sync

    try:
        figures = run_sync("bench", measure, args.n, args.rounds)
        figures["admin_page_ms"] = admin_page_ms(args.rounds)
    finally:
        cleanup()
    print(f"store={args.store} executions={args.n} (filled in {figures.pop('filled_s'):.1f}s)")
    for key, value in figures.items():
        print(f"  {key:16} {value:.1f}" if isinstance(value, float) else f"  {key:16} {value}")


if __name__ == "__main__":
    main()
