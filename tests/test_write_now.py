"""The fan-out writing events to waiting fast-path streams itself (``streams/write_now.py``).

In process, on the embedded default (memory store and layer), the fast path
(``django_sse_exec.asgi.wrap``) called as an ASGI server calls it, with a ``send``
that records each body and which task sent it. What must hold: every event once and
in order, written by the fan-out (not the stream's task) while the stream waits; a
``send`` that suspends (a paused transport) delays later events without reordering
them; a ``send`` that fails ends the stream; keepalives count silence from the last
write, direct or not; the view's bytes never go this way.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.asgi import get_asgi_application
from django.test import override_settings

import django_sse_exec as sse
from django_sse_exec.asgi import wrap
from django_sse_exec.hub.running import get_hub
from django_sse_exec.streams.write_now import COALESCE
from tests.helpers import wait_until
from tests.sse import SSEParser

GAP = COALESCE * 3  # between events: each is the first after a quiet spell


class Client:
    """One GET of a stream, served by an ASGI app in this process."""

    def __init__(self, app: Any, url: str) -> None:
        parts = urlsplit(url)
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": parts.path, "raw_path": parts.path.encode(),
                 "query_string": parts.query.encode(), "root_path": "",
                 "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 40000),
                 "server": ("testserver", 80)}
        self.bodies: list[tuple[bytes, bool]] = []  # (body, sent by the stream's own task)
        self.gone = asyncio.get_running_loop().create_future()
        self.gate: asyncio.Future[None] | None = None  # set: send suspends until it is done
        self.fail = False
        self.task = asyncio.ensure_future(app(scope, self.receive, self.send))

    async def receive(self) -> dict[str, Any]:
        if not hasattr(self, "_asked"):
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body":
            return
        if self.fail:
            raise OSError("the client went away")
        if self.gate is not None:
            await self.gate
        self.bodies.append((message.get("body", b""), asyncio.current_task() is self.task))

    def events(self) -> list[Any]:
        return SSEParser().feed(b"".join(body for body, _ in self.bodies))

    def ids(self) -> list[int]:
        return [e.int_id for e in self.events() if e.id]

    async def close(self) -> None:
        self.gone.set_result(None)
        await asyncio.wait([self.task], timeout=10)


@pytest.fixture
def app():
    return wrap(get_asgi_application())


async def _connected(app: Any, execution_id: str) -> Client:
    """A client of ``execution_id``'s stream, once its preamble arrived."""
    client = Client(app, sse.stream_url(execution_id))
    await wait_until(lambda: client.bodies, 10, what="the preamble")
    return client


async def _send(execution_id: str, count: int, start: int = 0) -> list[int]:
    ids = []
    for n in range(start, start + count):
        ids.append(await sse.asend_sse_event(execution_id, "step", {"n": n}))
        await asyncio.sleep(GAP)
    return ids


@pytest.mark.asyncio
async def test_events_to_a_waiting_stream_are_written_by_the_fan_out_once_and_in_order(app, execution_id):
    client = await _connected(app, execution_id)
    ids = await _send(execution_id, 10)
    await wait_until(lambda: client.ids() == ids, 10, what="every event")
    by_task = [own for body, own in client.bodies if b"\nid: " in b"\n" + body]
    assert by_task.count(False) >= 8, by_task  # the fan-out wrote (nearly) all of them
    await client.close()
    assert get_hub().local_count(execution_id) == 0


@pytest.mark.asyncio
async def test_a_send_that_suspends_holds_later_events_back_without_reordering(app, execution_id):
    client = await _connected(app, execution_id)
    first = await _send(execution_id, 2)
    await wait_until(lambda: client.ids() == first, 10, what="the first events")
    client.gate = asyncio.get_running_loop().create_future()  # the transport is paused
    held = await _send(execution_id, 5, start=2)
    await asyncio.sleep(0.1)
    assert client.ids() == first  # nothing got past the suspended write
    client.gate.set_result(None)
    client.gate = None
    later = await _send(execution_id, 3, start=7)
    await wait_until(lambda: client.ids() == first + held + later, 10, what="every event, in order")
    await client.close()


@pytest.mark.asyncio
async def test_a_send_that_fails_ends_the_stream(app, execution_id, caplog):
    client = await _connected(app, execution_id)
    await _send(execution_id, 1)
    await wait_until(lambda: client.ids() == [1], 10, what="the first event")
    client.fail = True
    await _send(execution_id, 1, start=1)
    await asyncio.wait([client.task], timeout=10)
    assert client.task.done()
    assert "reason=client_gone" in caplog.text
    await wait_until(lambda: get_hub().local_count(execution_id) == 0, 10, what="the stream gone")


@pytest.mark.asyncio
async def test_keepalives_count_silence_from_the_last_direct_write(app, execution_id):
    with override_settings(SSE_EXEC={"KEEPALIVE": 0.4}):
        client = await _connected(app, execution_id)
        for n in range(12):  # events every ~0.1 s for ~1.2 s: never 0.4 s of silence
            await sse.asend_sse_event(execution_id, "step", {"n": n})
            await asyncio.sleep(0.1)
        assert b": keepalive" not in b"".join(body for body, _ in client.bodies)
        await wait_until(lambda: b": keepalive" in b"".join(body for body, _ in client.bodies), 5,
                         what="a keepalive after silence")
        await client.close()


@pytest.mark.asyncio
async def test_the_view_writes_from_its_own_task(execution_id):
    client = await _connected(get_asgi_application(), execution_id)
    ids = await _send(execution_id, 4)
    await wait_until(lambda: client.ids() == ids, 10, what="every event")
    # Django's response iterates the stream: the fan-out never writes to it.
    (sub,) = get_hub().groups[execution_id].subscribers
    assert sub.sink is None and sub.direct_send is None
    await client.close()
