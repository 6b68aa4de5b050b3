"""The naive way to do SSE with channels: one channel and one receive loop per connection.

This is what the app's hub replaces (see the design notes); it is here only as
a point of comparison. Frames use the same wire format as the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from channels.layers import get_channel_layer
from django.http import HttpRequest, StreamingHttpResponse

#: Channel-layer message ``type`` of the events the benchmark sends to the naive view.
MESSAGE_TYPE = "naive.event"


def group_name(execution_id: str) -> str:
    return f"naive.{execution_id}"


async def _events(execution_id: str) -> AsyncIterator[bytes]:
    layer: Any = get_channel_layer("naive")
    channel = await layer.new_channel()
    await layer.group_add(group_name(execution_id), channel)
    try:
        yield b"retry: 2000\n: connected\n\n"
        while True:
            message = await layer.receive(channel)
            yield f"id: {message['id']}\nevent: {message['event']}\ndata: {message['data']}\n\n".encode()
    finally:
        await layer.group_discard(group_name(execution_id), channel)


async def stream(request: HttpRequest, execution_id: str) -> StreamingHttpResponse:
    """``GET /naive/<execution_id>``: every event sent to the execution's group."""
    request.META.pop("HTTP_ACCEPT_ENCODING", None)
    return StreamingHttpResponse(_events(execution_id), content_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
