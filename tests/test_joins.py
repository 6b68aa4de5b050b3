"""Batched work of a connect storm: the coalescer, and joining many groups at once.

The coalescer is pure asyncio (no Redis). The group joins run against the real
channel layers on Redis (skipped without one, a failure with
SSE_EXEC_REQUIRE_REDIS=1), plus the in-memory layer's fallback.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
from channels.layers import InMemoryChannelLayer
from django.test import override_settings

from django_sse_exec.layer.access import get_layer
from django_sse_exec.layer.names import group_name
from django_sse_exec.layer.redis.joins import group_add_many
from django_sse_exec.runtime.coalesce import Coalescer
from tests.test_delivery import layer_settings
from tests.workers import delete_keys


@pytest.mark.asyncio
async def test_calls_of_one_loop_turn_form_one_batch_in_order():
    batches: list[list[int]] = []

    async def handle(items: list[int]) -> list[object]:
        batches.append(items)
        await asyncio.sleep(0.01)
        return [ValueError(i) if i == 3 else i * 10 for i in items]

    coalescer: Coalescer[int] = Coalescer(handle)
    first = [coalescer.submit(i) for i in range(5)]
    await asyncio.sleep(0)  # the first batch is in flight: these form the next one
    second = [coalescer.submit(i) for i in range(5, 8)]
    results = await asyncio.gather(*first, *second, return_exceptions=True)
    assert batches == [[0, 1, 2, 3, 4], [5, 6, 7]]
    assert results[:3] == [0, 10, 20] and isinstance(results[3], ValueError)
    assert results[4:] == [40, 50, 60, 70]


@pytest.mark.asyncio
async def test_a_failed_batch_fails_its_callers_only_and_cancelled_callers_are_left_out():
    seen: list[list[str]] = []

    async def handle(items: list[str]) -> list[object]:
        seen.append(items)
        if "bad" in items:
            raise ConnectionError("down")
        return items

    coalescer: Coalescer[str] = Coalescer(handle, on_error=lambda exc: RuntimeError(str(exc)))
    bad = [coalescer.submit("bad"), coalescer.submit("x")]
    with pytest.raises(RuntimeError, match="down"):
        await bad[0]
    with pytest.raises(RuntimeError):
        await bad[1]
    gone = coalescer.submit("gone")
    gone.cancel()
    assert await coalescer.submit("ok") == "ok"
    assert seen == [["bad", "x"], ["ok"]]


@pytest.mark.asyncio
async def test_joins_fall_back_to_group_add_on_other_layers():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    groups = [f"g{i}" for i in range(40)]
    assert await group_add_many(layer, groups, channel) == [None] * 40
    await layer.group_send("g39", {"type": "m", "n": 1})
    assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 1


@pytest.fixture
def prefix(requires_redis):
    value = f"j{uuid.uuid4().hex[:10]}"
    yield value
    delete_keys(requires_redis, value)


@pytest.mark.asyncio
@pytest.mark.parametrize("layer_name", ["pubsub", "redis"])
async def test_many_groups_join_at_once_and_each_receives(requires_redis, prefix, layer_name):
    """300 groups joined in one call: on pub/sub with one SUBSCRIBE; every group delivers."""
    raw = redis.Redis.from_url(requires_redis)
    with override_settings(**layer_settings(requires_redis, layer_name, prefix)):
        layer = get_layer()
        channel = await layer.new_channel()
        groups = [group_name(f"e{i}") for i in range(300)]
        before = raw.info("commandstats").get("cmdstat_subscribe", {}).get("calls", 0)
        assert await group_add_many(layer, groups, channel) == [None] * 300
        await group_add_many(layer, groups[:10], channel)  # joining again changes nothing
        if layer_name == "pubsub":
            subscribes = raw.info("commandstats")["cmdstat_subscribe"]["calls"] - before
            assert subscribes < 10  # one per batch (others may subscribe meanwhile)
            channels = {c.decode() for c in raw.pubsub_channels(f"asgi_{prefix}__group__*")}
            assert len(channels) == 300
        for i in (0, 150, 299):
            await layer.group_send(groups[i], {"type": "m", "n": i})
        got = [(await asyncio.wait_for(layer.receive(channel), 10))["n"] for _ in range(3)]
        assert got == [0, 150, 299]
        for group in groups:
            await layer.group_discard(group, channel)
        if layer_name == "pubsub":
            await layer.flush()
    raw.close()
