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
    result = await run_throughput(layer, server, streams, threads, 5000, redis_url=requires_redis)
    print(f"\n{result}")
    assert result["events"] == 5000
    assert (result["lost"], result["duplicated"], result["out_of_order"], result["resets"]) \
        == (0, 0, 0, 0), result
