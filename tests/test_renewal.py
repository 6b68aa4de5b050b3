"""Tokens renewed on open streams, and expired ones answered with a typed event.

Real daphne over real sockets, the Django view and the ASGI fast path alike,
with tokens of two seconds: a stream gets ``stream-token-renewed`` before its
token expires and the new token resumes exactly (also across a server restart
after the first token expired); a user the policy revoked is not renewed and
gets ``stream-token-expired``; so does a reconnect with an expired token.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.core.exceptions import PermissionDenied

from django_sse_exec import stream_url
from django_sse_exec.auth import signed_token
from tests.conftest import entry_point_env
from tests.helpers import names, wait_until
from tests.server import Server
from tests.sse import SSEClient
from tests.tokens import expired_stream_url

pytestmark = pytest.mark.asyncio

RENEWED, EXPIRED = "stream-token-renewed", "stream-token-expired"
#: Renew at half a token's life (the most allowed): a renewed token then outlives the
#: first by half a life, the window in which these tests reconnect after the first
#: expired (at a quarter, a loaded machine's connect could miss it).
RENEW = {"KEEPALIVE": 30, "TOKEN_RENEW_BEFORE": 60}


async def revocable(request, execution_id: str) -> bool:
    """A custom policy: the signed token, unless the execution is listed in ``TEST_REVOKED``."""
    if execution_id in Path(os.environ["TEST_REVOKED"]).read_text().split():
        raise PermissionDenied("access revoked")
    return await signed_token(request, execution_id)


@pytest.fixture(scope="module")
def revoked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("renewal") / "revoked"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def srv(entry_point: str, revoked: Path) -> Iterator[Server]:
    env = {**entry_point_env(entry_point), "TEST_REVOKED": str(revoked)}
    with Server("daphne", env=env, sse_exec={
            **RENEW, "AUTHORIZE": "tests.test_renewal.revocable"}) as server:
        yield server


def expiry_of(url: str) -> float:
    token = parse_qs(urlsplit(url).query)["token"][0]
    return signing.loads(token, salt="django_sse_exec.stream")["x"]


async def test_a_stream_renews_its_token_and_the_new_one_resumes_exactly(srv, execution_id):
    url = stream_url(execution_id, max_age=4)
    srv.send(execution_id, ("step", 1))
    async with SSEClient(srv.base_url + url) as first:
        events = await first.wait_for(lambda ev: RENEWED in names(ev), timeout=6)
    assert names(events) == ["step", RENEWED]
    renewed = events[-1].json
    path, _, query = renewed["url"].partition("?")
    assert path == url.split("?")[0] and parse_qs(query) == {"token": [renewed["token"]]}
    assert "last_event_id" not in renewed["url"]
    assert renewed["expires"] > expiry_of(url)
    # The first token expires while nobody is connected; events keep coming.
    await wait_until(lambda: time.time() > expiry_of(url) + 0.1, 5, "the first token expired")
    await srv.asend(execution_id, ("step", 2), ("step", 3))
    async with SSEClient(srv.base_url + renewed["url"], {"Last-Event-ID": "1"}) as again:
        events = await again.wait_for(lambda ev: len(ev) >= 2)
        assert [(e.event, e.int_id) for e in events[:2]] == [("step", 2), ("step", 3)]
    async with SSEClient(srv.base_url + url, {"Last-Event-ID": "3"}) as stale:
        assert stale.response.status_code == 200
        events = await stale.read_until_closed(timeout=5)
    assert names(events) == [EXPIRED] and events[0].json == {"reason": "expired token"}
    assert b"retry: 86400000\n" in stale.raw


async def test_a_set_and_a_feed_renew_their_tokens_too(make_server, execution_id):
    from django_sse_exec import feed_stream_url, multi_stream_url

    srv = make_server("daphne", sse_exec=RENEW)  # the default policy: their own tokens
    srv.send(execution_id, ("step", 1))
    srv.feed_add(f"feed-{execution_id}", execution_id)

    async def renews(url: str) -> None:
        # Two renewals: the second is checked with the first's token.
        async with SSEClient(srv.base_url + url) as client:
            events = await client.wait_for(lambda ev: names(ev).count(RENEWED) >= 2, timeout=12)
        first, second = (e.json["url"] for e in events if e.event == RENEWED)
        assert first.split("?")[0] == second.split("?")[0] == url.split("?")[0]
        assert first != second and "step" in names(events)
        async with SSEClient(srv.base_url + second) as again:  # the renewed token opens it
            assert again.response.status_code == 200
            await again.wait_for(lambda ev: "step" in names(ev))

    await asyncio.gather(renews(multi_stream_url([execution_id, f"{execution_id}-b"], max_age=3)),
                         renews(feed_stream_url(f"feed-{execution_id}", max_age=3)))


async def test_a_reconnect_with_an_expired_token_gets_a_typed_event_not_a_403(srv, execution_id):
    srv.send(execution_id, ("secret", {"s": "not for you"}))
    async with SSEClient(srv.base_url + expired_stream_url(execution_id)) as client:
        assert client.response.status_code == 200
        assert client.response.headers["content-type"].startswith("text/event-stream")
        events = await client.read_until_closed(timeout=5)
    assert names(events) == [EXPIRED] and b"not for you" not in client.raw


async def test_a_revoked_user_is_not_renewed_and_is_told_so(srv, execution_id, revoked):
    url = stream_url(execution_id, max_age=3)
    async with SSEClient(srv.base_url + url) as client:
        srv.send(execution_id, ("step", 1))
        await client.wait_for(lambda ev: names(ev) == ["step"])
        revoked.write_text(revoked.read_text() + f"\n{execution_id}\n")
        events = await client.read_until_closed(timeout=6)
    assert names(events) == ["step", EXPIRED]
    assert events[-1].json == {"reason": "access revoked"}


async def test_after_a_restart_past_the_first_tokens_expiry_the_renewed_one_resumes(
        requires_redis, make_server, execution_id):
    """The server goes away, the first token expires, another server process takes over
    (same Redis): the renewed token resumes exactly where the client was."""
    settings = {"env": {"TEST_LAYER": "redis"}, "sse_exec": RENEW}
    srv = make_server("daphne", **settings)
    again = make_server("daphne", **settings)  # started now: its start-up is in no token's life
    url = stream_url(execution_id, max_age=4)
    srv.send(execution_id, ("step", 1))
    async with SSEClient(srv.base_url + url) as client:
        events = await client.wait_for(lambda ev: RENEWED in names(ev), timeout=8)
    renewed = events[-1].json["url"]
    srv.stop()
    await again.asend(execution_id, ("step", 2))
    await wait_until(lambda: time.time() > expiry_of(url) + 0.1, 5, "the first token expired")
    async with SSEClient(again.base_url + renewed, {"Last-Event-ID": "1"}) as client:
        events = await client.wait_for(lambda ev: len(ev) >= 1)
    assert [(e.event, e.int_id) for e in events] == [("step", 2)]


# -- the page does not replay what it already painted -----------------------------------


async def test_a_stream_of_a_rendered_state_starts_after_it(srv, execution_id):
    """The template tag renders from a state; an event sent before the connect still
    arrives, and nothing the page painted comes again."""
    from django.template import Context, Template

    from django_sse_exec.execution.state import ExecutionState

    painted = ExecutionState(execution_id)
    for event_id in srv.send(execution_id, ("step", 1), ("step", 2)):
        painted.last_event_id = event_id
    page = Template("{% load sse_exec %}{% sse_stream_url execution_id after=state %}").render(
        Context({"execution_id": execution_id, "state": painted}))
    assert parse_qs(urlsplit(page.replace("&amp;", "&")).query)["last_event_id"] == ["2"]
    srv.send(execution_id, ("step", 3))
    async with SSEClient(srv.base_url + page.replace("&amp;", "&")) as client:
        srv.send(execution_id, ("step", 4))
        events = await client.wait_for(lambda ev: len(ev) >= 2)
    assert [e.int_id for e in events] == [3, 4]


async def test_the_widget_streams_from_where_it_was_rendered(srv, execution_id):
    import httpx

    srv.send(execution_id, ("step", 1), ("step", 2))
    html = httpx.get(f"{srv.base_url}/test/htmx/{execution_id}").text
    url = html.split('sse-connect="')[1].split('"')[0].replace("&amp;", "&")
    assert parse_qs(urlsplit(url).query)["last_event_id"] == ["2"]
    srv.send(execution_id, ("step", 3))
    async with SSEClient(srv.base_url + url) as client:
        events = await client.wait_for(lambda ev: any(e.id == "3" for e in ev))
    assert {e.int_id for e in events if e.id} == {3}


async def test_after_must_be_a_state_or_an_event_id():
    assert "last_event_id" not in stream_url("exec-1", after=0)
    for bad in (-1, "2", 1.5, True):
        with pytest.raises(ValueError, match="after must be"):
            stream_url("exec-1", after=bad)
