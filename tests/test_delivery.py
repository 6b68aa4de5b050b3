"""How an event leaves a process: chosen once per configuration, probed, with a fallback.

Against the real Redis and the real channels_redis layers: the fused path is
chosen where it works; an untested channels_redis version or a probe that does
not get the message back through the layer's public API falls back to
``group_send`` with one warning, and events still arrive.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from django.test import override_settings

from django_sse_exec.layer.access import get_layer
from django_sse_exec.layer.names import group_name
from django_sse_exec.layer.redis import fused, versions
from django_sse_exec.sending import delivery
from tests.workers import delete_keys


def layer_settings(url: str, layer: str, prefix: str) -> dict:
    backend = {"redis": "channels_redis.core.RedisChannelLayer",
               "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer"}[layer]
    return {"CHANNEL_LAYERS": {"default": {"BACKEND": backend, "CONFIG": {
        "hosts": [{"address": url, "socket_timeout": 30}], "prefix": f"asgi_{prefix}"}}},
        "SSE_EXEC": {"KEY_PREFIX": prefix}}


@pytest.fixture
def prefix(requires_redis):
    value = f"d{uuid.uuid4().hex[:10]}"
    yield value
    delete_keys(requires_redis, value)


async def receive_one_send(layer_name: str, url: str, prefix: str) -> tuple[str, dict]:
    """Choose the delivery, send one event to a listening channel, return both."""
    import django_sse_exec as sse

    with override_settings(**layer_settings(url, layer_name, prefix)):
        chosen = await delivery.aget_delivery()
        layer = get_layer()
        channel = await layer.new_channel()
        await layer.group_add(group_name("e"), channel)
        event_id = await sse.asend_sse_event("e", "step", {"n": 1})
        message = await asyncio.wait_for(layer.receive(channel), 10)
        await layer.group_discard(group_name("e"), channel)
        if layer_name == "pubsub":
            await layer.flush()
        await chosen.store.aclose()
        assert message["id"] == event_id and message["data"] == '{"n":1}'
        return type(chosen).__name__, message


@pytest.mark.asyncio
@pytest.mark.parametrize("layer_name", ["redis", "pubsub"])
async def test_the_tested_channels_redis_gets_the_fused_path(requires_redis, prefix, layer_name):
    name, _ = await receive_one_send(layer_name, requires_redis, prefix)
    assert name == "Fused"


@pytest.mark.asyncio
async def test_an_untested_channels_redis_version_uses_group_send(
        requires_redis, prefix, monkeypatch, caplog):
    monkeypatch.setattr(versions, "installed_version", lambda: (9, 0))
    with caplog.at_level(logging.WARNING, logger="django_sse_exec"):
        name, _ = await receive_one_send("pubsub", requires_redis, prefix)
    assert name == "LoggedThenPublished"
    assert "not a version this app was tested with" in caplog.text


@pytest.mark.asyncio
@pytest.mark.parametrize("layer_name", ["redis", "pubsub"])
async def test_a_probe_mismatch_falls_back_to_group_send_with_one_warning(
        requires_redis, prefix, monkeypatch, caplog, layer_name):
    """As if channels_redis had changed its layout: the fused script delivers to the
    wrong place, the probe receives nothing, and the layer's API takes over."""
    kind = {"redis": "core", "pubsub": "pubsub"}[layer_name]
    call = {"core": "redis.call('ZRANGE', ", "pubsub": "redis.call('PUBLISH', "}[kind]
    broken = fused.TAILS[kind].replace(call, call + "'elsewhere-' .. ")
    assert broken != fused.TAILS[kind]
    monkeypatch.setitem(fused.TAILS, kind, broken)
    with caplog.at_level(logging.WARNING, logger="django_sse_exec"):
        name, _ = await receive_one_send(layer_name, requires_redis, prefix)
    assert name == "LoggedThenPublished"
    warnings = [r for r in caplog.records if "falling back to the layer's group_send" in r.message]
    assert len(warnings) == 1, caplog.text


@pytest.mark.asyncio
async def test_concurrent_first_sends_share_one_probe(requires_redis, prefix, monkeypatch):
    """Hundreds of sends at once on a fresh process wait for one probe (each running its
    own exhausted the connection pool)."""
    probes = []
    real_probe = fused.probe

    async def counted(*args, **kwargs):
        probes.append(args)
        return await real_probe(*args, **kwargs)

    monkeypatch.setattr(fused, "probe", counted)
    with override_settings(**layer_settings(requires_redis, "pubsub", prefix)):
        chosen = await asyncio.gather(*(delivery.aget_delivery() for _ in range(200)))
        assert len({id(c) for c in chosen}) == 1 and type(chosen[0]).__name__ == "Fused"
        await chosen[0].store.aclose()
        await get_layer().flush()
    assert len(probes) == 1
