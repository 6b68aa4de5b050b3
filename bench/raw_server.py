"""The ceiling: a minimal SSE server on bare asyncio, fed by one Redis subscription.

No framework, no authorisation, no replay: it accepts ``GET /raw/<execution id>``,
answers with the SSE headers and preamble, and writes every message published on
``<prefix>.<execution id>`` (``"<id>\\n<event>\\n<data>"``) to the execution's
connections, framed once per message (as HTTP/1.1 chunks, like the ASGI servers,
so the load client does the same work for every system). Whatever the other systems do beyond this
is overhead measured against it.

    python -m bench.raw_server --port 8001 --prefix bench [--loop uvloop]

``--loop uvloop`` runs it on the event loop of the fast dependency set
(:mod:`bench.deps`), so that the app's servers are compared with a ceiling on
the same loop; redis-py parses with hiredis whenever that imports.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import redis.asyncio as redis

from bench import deps


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk: the same framing the ASGI servers use."""
    return b"%x\r\n%s\r\n" % (len(data), data)


HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk(b"retry: 2000\n: connected\n\n"))

#: Open connections by execution id.
streams: dict[str, set[asyncio.Transport]] = {}


class Connection(asyncio.Protocol):
    """One HTTP connection: read the request line, then only write."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.execution_id: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.execution_id is not None:
            return
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        parts = self.buffer.split(b" ", 2)
        path = parts[1].decode("latin-1") if len(parts) > 2 else ""
        assert self.transport is not None
        if not path.startswith("/raw/"):
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()
            return
        self.execution_id = path[5:].split("?", 1)[0]
        self.buffer = b""
        streams.setdefault(self.execution_id, set()).add(self.transport)
        self.transport.write(HEAD)

    def connection_lost(self, exc: Exception | None) -> None:
        group = streams.get(self.execution_id or "")
        if group is not None:
            group.discard(self.transport)  # type: ignore[arg-type]
            if not group:
                del streams[self.execution_id]  # type: ignore[arg-type]


def relay(execution_id: str, message: bytes) -> None:
    """Write one message (``b"<id>\\n<event>\\n<data>"``) to its execution's connections, framed once."""
    group = streams.get(execution_id)
    if not group:
        return
    event_id, event, data = message.split(b"\n", 2)
    frame = chunk(b"id: " + event_id + b"\nevent: " + event + b"\ndata: " + data + b"\n\n")
    for transport in group:
        transport.write(frame)


async def fan_out(redis_url: str, prefix: str) -> None:
    """Relay every published message to the connections of its execution."""
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.psubscribe(f"{prefix}.*")
    skip = len(prefix) + 1
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
        if message is None:
            continue
        relay(message["channel"][skip:].decode(), message["data"])


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Connection, "127.0.0.1", args.port, backlog=4096)
    relaying = asyncio.create_task(fan_out(args.redis_url, args.prefix))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    relaying.cancel()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="bench_raw")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    deps.run(serve(args), args.loop)


if __name__ == "__main__":
    main()
