"""The floor of an ASGI server: the raw reference's relay as a bare ASGI app.

    uvicorn bench.asgi_raw:app      # (bench.run starts it as the systems asgi-uvicorn, asgi-daphne)

The same work as :mod:`bench.raw_server` — one Redis pattern subscription, each
message framed once and written to every connection of its execution, no
authorisation, no replay — but under uvicorn or daphne, through ASGI messages:
``GET /asgi/<execution id>`` gets the SSE headers and preamble, then each event
as an ``http.response.body``; the request's own coroutine waits for the
disconnect. What the app's servers cost beyond this is the app's; what this
costs beyond :mod:`bench.raw_server` is the ASGI server's, so it is the limit
of the chosen server (per connect, per idle stream, per delivered event).
Every other path goes to the benchmark's Django project (its control and
runtime endpoints). Messages are published on ``<TEST_KEY_PREFIX>_raw.<id>``,
as for the raw server, on ``REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bench.raw_server import fan_out, frame_of
from example_project.asgi import application as django_app

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
PREAMBLE = b"retry: 2000\n: connected\n\n"

#: Each execution's open streams: their ``send``.
streams: dict[str, set[Send]] = {}
_relay: asyncio.Task[None] | None = None


async def _deliver(execution_id: str, message: bytes) -> None:
    group = streams.get(execution_id)
    if not group:
        return
    body = {"type": "http.response.body", "body": frame_of(message), "more_body": True}
    for send in list(group):
        await send(body)


async def app(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]], send: Send) -> None:
    """ASGI: ``/asgi/<execution id>`` is a raw stream, everything else Django."""
    global _relay
    if _relay is None:  # on the first request (the start-up check): subscribed before any stream
        _relay = asyncio.ensure_future(fan_out(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                                               f"{os.environ.get('TEST_KEY_PREFIX', 'bench')}_raw",
                                               _deliver))
    if scope["type"] != "http" or not scope["path"].startswith("/asgi/"):
        await django_app(scope, receive, send)
        return
    execution_id = scope["path"][len("/asgi/"):]
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": PREAMBLE, "more_body": True})
    group = streams.setdefault(execution_id, set())
    group.add(send)
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    finally:
        group.discard(send)
        if not group:
            streams.pop(execution_id, None)
