"""One execution at full sync-send speed, read by 1 and 100 streams, on both Redis
layers: every stream gets every event once, in order, with no ``stream-reset``.

The figures (send rate, latency) come from ``python -m bench.throughput``; this
checks correctness only. The core layer's channel is slower than a busy sender
(one message per Redis round trip), so it exercises the hub's catch-up from the
log; 100 streams exercise the streams' batched writes.
"""

from __future__ import annotations

import pytest

from bench.throughput import run_throughput


@pytest.mark.asyncio
@pytest.mark.parametrize("layer", ["redis", "pubsub"])
@pytest.mark.parametrize(("server", "streams", "threads"), [
    ("daphne", 1, 1), ("daphne", 100, 4), ("uvicorn", 100, 1)])
async def test_full_speed_into_one_execution_loses_nothing(
        requires_redis, layer, server, streams, threads):
    # With 100 streams this test's own client (one Python process parsing 500,000
    # events on the 2 cores it shares with the server and the sender) can fall
    # seconds behind, and a client that slow rightly gets stream-reset once the
    # history is trimmed past it: keep the whole run in the history there. One
    # stream runs on the defaults, where the server itself must keep up.
    history = {"HISTORY_MAX_EVENTS": 10_000} if streams > 1 else {}
    result = await run_throughput(layer, server, streams, threads, 5000,
                                  redis_url=requires_redis, **history)
    print(f"\n{result}")
    assert result["events"] == 5000
    assert (result["lost"], result["duplicated"], result["out_of_order"], result["resets"]) \
        == (0, 0, 0, 0), result
