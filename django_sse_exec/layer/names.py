"""The channel-layer names of the app's groups, for the app and for what it knows of channels_redis."""

from __future__ import annotations

from ..conf import sse_settings


def group_name(execution_id: str) -> str:
    """The channel-layer group of an execution (ids are pre-validated, so it is valid)."""
    return f"{sse_settings.KEY_PREFIX}.{execution_id}"


__all__ = ["group_name"]
