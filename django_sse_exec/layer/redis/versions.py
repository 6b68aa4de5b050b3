"""Which channels_redis is installed, and whether the suite has run against it.

Part of :mod:`django_sse_exec.layer.redis`: every use of channels_redis's
internals is gated on :func:`version_is_tested` (and on the layer's
configuration, :func:`layer_config`), with the layer's public API as the
fallback.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from django.conf import settings

from ...conf import sse_settings

#: channels_redis releases (major, minor) the suite has run against; setup.cfg
#: declares the same range (``channels_redis>=4.2,<4.4``) and CI runs the Redis
#: tests on the oldest and the newest.
TESTED_VERSIONS = ((4, 2), (4, 3))


def installed_version() -> tuple[int, int] | None:
    """(major, minor) of the installed channels_redis, or None if it is not installed."""
    try:
        parts = metadata.version("channels_redis").split(".")
        return int(parts[0]), int(parts[1])
    except (metadata.PackageNotFoundError, ValueError, IndexError):
        return None


def version_is_tested() -> bool:
    """Whether the installed channels_redis is one the suite has run against."""
    return installed_version() in TESTED_VERSIONS


def is_redis_layer(layer: Any) -> bool:
    """True when the layer is one of channels_redis's (core or pub/sub)."""
    return type(layer).__module__.startswith("channels_redis")


def layer_config() -> dict[str, Any]:
    """The ``CONFIG`` of the channel layer the app uses (empty if none)."""
    return (getattr(settings, "CHANNEL_LAYERS", None) or {}).get(
        sse_settings.CHANNEL_LAYER, {}).get("CONFIG", {}) or {}


__all__ = ["TESTED_VERSIONS", "installed_version", "is_redis_layer", "layer_config",
           "version_is_tested"]
