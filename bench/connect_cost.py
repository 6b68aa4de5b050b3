"""Where a stream connect's time goes, step by step, in one process (no HTTP server).

    python -m bench.connect_cost            # 2000 connects on 2000 executions

Runs the fast path's steps for many connects, one step at a time over all of
them, on the same Redis as the benchmark: URL match, request object, the
authorisation policy (signed token), the hub subscription (channel-layer group
join + membership write) and the first log read. The figures are CPU plus
Redis round trips per connect; the server adds its HTTP parsing and the socket.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.asgi_driver import scope_for
from bench.run import PREFIX  # noqa: F401  (configures Django for the benchmark)
from django_sse_exec import stream_url
from django_sse_exec.auth.policies import authorize
from django_sse_exec.http.fastpath import StreamFastPath, _build_request
from django_sse_exec.hub.running import get_hub


async def timed(label: str, count: int, step: Callable[[int], Awaitable[Any] | Any]) -> list[Any]:
    started = time.perf_counter()
    results = []
    for i in range(count):
        result = step(i)
        if asyncio.iscoroutine(result):
            result = await result
        results.append(result)
    print(f"{label:<40} {(time.perf_counter() - started) / count * 1e6:8.1f} µs per connect", flush=True)
    return results


async def main(count: int) -> None:
    run = uuid.uuid4().hex[:8]
    ids = [f"cost-{run}-{i}" for i in range(count)]
    scopes = [scope_for(stream_url(e)) for e in ids]
    app = StreamFastPath(None)  # type: ignore[arg-type]
    hub = get_hub()
    await hub.start()
    store = hub.store
    await timed("match the URL (Django resolver)", count, lambda i: app.match(scopes[i]))
    requests = await timed("build the request", count, lambda i: _build_request(scopes[i]))
    await timed("authorise (signed token)", count, lambda i: authorize(requests[i], ids[i]))
    subs = await timed("subscribe: group join + membership", count, lambda i: hub.subscribe(ids[i]))
    await timed("read the log (replay)", count, lambda i: store.read(ids[i], after=0))
    more = await timed("subscribe to a joined execution", count, lambda i: hub.subscribe(ids[i]))
    await timed("unsubscribe", count, lambda i: hub.unsubscribe(subs[i]))
    await timed("unsubscribe the last: group leave", count, lambda i: hub.unsubscribe(more[i]))
    await hub.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
