"""Access to the channel layer the app publishes on.

With no ``CHANNEL_LAYERS`` configured the app still works in one process: it
uses a private in-memory layer with a large capacity (the embedded default).
How events are put on the layer is :mod:`django_sse_exec.sending.delivery`'s job; what
the app knows of channels_redis's internals is in :mod:`django_sse_exec.layer.redis`.
"""

from __future__ import annotations

from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from ..conf import sse_settings
from .redis import versions

_embedded: InMemoryChannelLayer | None = None


def get_layer() -> Any:
    """The channel layer for ``SSE_EXEC["CHANNEL_LAYER"]``, or the embedded one."""
    global _embedded
    if getattr(settings, "CHANNEL_LAYERS", None):
        layer = get_channel_layer(sse_settings.CHANNEL_LAYER)
        if layer is not None:
            return layer
    if _embedded is None:
        _embedded = InMemoryChannelLayer(capacity=10_000)
    return _embedded


def is_redis_layer(layer: Any = None) -> bool:
    """True when the layer is one of channels_redis's (core or pub/sub)."""
    return versions.is_redis_layer(get_layer() if layer is None else layer)


def is_memory_layer(layer: Any = None) -> bool:
    """True for channels' in-memory layer, which works inside one process only."""
    layer = get_layer() if layer is None else layer
    return isinstance(layer, InMemoryChannelLayer)
