"""Security headers and stream caps, through real daphne servers, on both entry points.

* Every answer of the stream endpoint — stream, 403, 404, 204, 405, 429 — carries
  ``X-Content-Type-Options: nosniff``, ``Cache-Control: no-cache, no-store, private``
  and ``Referrer-Policy: no-referrer``, and ``Vary: Cookie`` when the answer
  depended on the session; the Django view and the ASGI fast path alike.
* ``MAX_STREAMS_PER_ADDRESS`` / ``MAX_STREAMS_PER_USER`` answer ``429`` with
  ``Retry-After`` over the cap, and a closed stream gives its place back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from django_sse_exec import stream_url
from tests.conftest import entry_point_env, migrated_db_env
from tests.helpers import wait_until
from tests.server import Server
from tests.sse import SSEClient

pytestmark = pytest.mark.asyncio

SECURITY = {"x-content-type-options": "nosniff", "cache-control": "no-cache, no-store, private",
            "referrer-policy": "no-referrer"}


@pytest.fixture(scope="module")
def db_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return migrated_db_env(tmp_path_factory, "hardening")


@pytest.fixture(scope="module")
def servers(db_env: dict[str, str], entry_point: str) -> Iterator[Callable[..., Server]]:
    """``servers(**SSE_EXEC)``: a daphne with those settings, started once per entry point."""
    started: dict[str, Server] = {}

    def get(**sse_exec: Any) -> Server:
        key = repr(sorted(sse_exec.items()))
        if key not in started:
            started[key] = Server("daphne", env={**db_env, **entry_point_env(entry_point)},
                                  sse_exec={"KEEPALIVE": 30, **sse_exec}).start()
        return started[key]

    yield get
    for srv in started.values():
        srv.stop()


def login(srv: Server, username: str) -> dict[str, str]:
    resp = httpx.post(srv.base_url + "/control/login", json={"username": username})
    resp.raise_for_status()
    return {"sessionid": resp.cookies["sessionid"]}


def assert_secure(headers: httpx.Headers, vary_cookie: bool) -> None:
    for name, value in SECURITY.items():
        assert headers.get(name) == value, (name, dict(headers))
    assert ("cookie" in headers.get("vary", "").lower()) is vary_cookie, dict(headers)


def new_id() -> str:
    return f"h-{uuid.uuid4().hex[:12]}"


# -- headers ---------------------------------------------------------------------


async def test_every_answer_of_the_token_policy_carries_the_security_headers(servers):
    srv = servers()
    execution_id = new_id()
    srv.send(execution_id, ("step", {"n": 1}))
    async with SSEClient(srv.base_url + stream_url(execution_id)) as client:
        assert client.response.status_code == 200
        assert_secure(client.response.headers, vary_cookie=False)  # the token alone decided
        assert client.response.headers["content-type"] == "text/event-stream; charset=utf-8"
    base = srv.base_url + f"/sse/executions/{execution_id}/events"
    refused = httpx.get(base + "?token=abc")
    assert refused.status_code == 403
    assert_secure(refused.headers, vary_cookie=False)
    unknown = httpx.get(srv.base_url + "/sse/executions/-bad-/events")
    assert unknown.status_code == 404
    assert_secure(unknown.headers, vary_cookie=False)
    wrong_method = httpx.post(srv.base_url + stream_url(execution_id))
    assert wrong_method.status_code == 405
    assert_secure(wrong_method.headers, vary_cookie=False)
    last = srv.close(execution_id)
    done = httpx.get(srv.base_url + stream_url(execution_id), headers={"Last-Event-ID": str(last)})
    assert done.status_code == 204
    assert_secure(done.headers, vary_cookie=False)


async def test_session_policies_add_vary_cookie(servers):
    srv = servers(AUTHORIZE="django_sse_exec.auth.authenticated_user")
    execution_id = new_id()
    url = srv.base_url + f"/sse/executions/{execution_id}/events"
    anonymous = httpx.get(url)
    assert anonymous.status_code == 403
    assert_secure(anonymous.headers, vary_cookie=True)
    cookies = login(srv, f"u-{uuid.uuid4().hex[:8]}")
    async with SSEClient(url, {"Cookie": f"sessionid={cookies['sessionid']}"}) as client:
        assert client.response.status_code == 200
        assert_secure(client.response.headers, vary_cookie=True)


async def test_user_bound_token_adds_vary_cookie(servers):
    srv = servers()
    execution_id = new_id()
    cookies = login(srv, f"u-{uuid.uuid4().hex[:8]}")
    pk = httpx.post(srv.base_url + "/control/login", json={"username": "x-" + execution_id}).json()
    url = srv.base_url + stream_url(execution_id, user=pk["pk"])
    refused = httpx.get(url, cookies=cookies)  # another user's session
    assert refused.status_code == 403 and refused.text == "token is for another user"
    assert_secure(refused.headers, vary_cookie=True)


# -- caps ------------------------------------------------------------------------


async def test_streams_per_address_are_capped_with_429_and_retry_after(servers):
    srv = servers(MAX_STREAMS_PER_ADDRESS=3, STREAM_CAP_RETRY_AFTER=7)
    execution_id = new_id()
    url = srv.base_url + stream_url(execution_id)
    clients = [SSEClient(url) for _ in range(3)]
    try:
        for client in clients:
            assert (await client.connect()).status_code == 200
        over = httpx.get(url)
        assert over.status_code == 429 and over.text == "too many streams from this address"
        assert over.headers["retry-after"] == "7"
        assert_secure(over.headers, vary_cookie=False)
        other = httpx.get(srv.base_url + stream_url(new_id()))  # the cap is per address, any id
        assert other.status_code == 429
        await clients.pop().close()
        await wait_until(lambda: srv.count(execution_id) == 2, 30, what="stream closed")
        # Its place is free again: a new stream is admitted, and the cap still holds.
        await wait_until(lambda: _opens(url), 30, what="a place freed by the close")
        clients.append(SSEClient(url))
        assert (await clients[-1].connect()).status_code == 200
        assert httpx.get(url).status_code == 429
    finally:
        for client in clients:
            await client.close()


def _opens(url: str) -> bool:
    """Open a stream, read its headers and close it at once: True if it was admitted."""
    with httpx.stream("GET", url, timeout=10) as resp:
        return resp.status_code == 200


async def test_streams_per_user_are_capped_and_users_do_not_share_a_count(servers):
    srv = servers(AUTHORIZE="django_sse_exec.auth.authenticated_user", MAX_STREAMS_PER_USER=2)
    url = srv.base_url + f"/sse/executions/{new_id()}/events"
    alice, bob = (login(srv, f"{name}-{uuid.uuid4().hex[:8]}") for name in ("alice", "bob"))
    clients = [SSEClient(url, {"Cookie": f"sessionid={alice['sessionid']}"}) for _ in range(2)]
    try:
        for client in clients:
            assert (await client.connect()).status_code == 200
        over = httpx.get(url, cookies=alice)
        assert over.status_code == 429 and over.text == "too many streams for this user"
        assert over.headers["retry-after"] == "10"
        assert_secure(over.headers, vary_cookie=True)
        clients.append(SSEClient(url, {"Cookie": f"sessionid={bob['sessionid']}"}))
        assert (await clients[-1].connect()).status_code == 200
    finally:
        for client in clients:
            await client.close()


async def test_caps_are_off_by_default(servers):
    srv = servers()
    url = srv.base_url + stream_url(new_id())
    clients = [SSEClient(url) for _ in range(20)]
    try:
        for client in clients:
            assert (await client.connect()).status_code == 200
    finally:
        for client in clients:
            await client.close()
