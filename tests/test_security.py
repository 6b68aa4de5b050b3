"""Attacks on the stream endpoint through real daphne processes over real sockets.

Every refused attempt must give a 403/404/4xx (or a connection the server
closes) with a short plain-text reason: no event bytes, no traceback. Each
execution attacked here holds a secret event first, so a leak would show.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from django_sse_exec import stream_url
from tests.conftest import entry_point_env, migrated_db_env
from tests.helpers import names
from tests.server import ROOT, Server
from tests.sse import SSEClient
from tests.tokens import expired_stream_url

pytestmark = pytest.mark.asyncio

SECRET = "TOP-SECRET-PAYLOAD"


# -- servers sharing one sqlite file, so sessions made on one are seen by all ------


@pytest.fixture(scope="module")
def db_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated sqlite file for the servers of this module (users and sessions)."""
    return migrated_db_env(tmp_path_factory, "security")


@pytest.fixture(scope="module")
def servers(db_env: dict[str, str], entry_point: str) -> Iterator[Callable[..., Server]]:
    """``servers(policy, kind)``: a daphne (or uvicorn) using that AUTHORIZE policy, started
    once per entry point (the Django view and the ASGI fast path are both attacked)."""
    started: dict[tuple[str, str], Server] = {}

    def get(policy: str = "django_sse_exec.auth.signed_token", kind: str = "daphne") -> Server:
        if (policy, kind) not in started:
            started[policy, kind] = Server(kind, env={**db_env, **entry_point_env(entry_point)},
                                           sse_exec={"AUTHORIZE": policy, "KEEPALIVE": 30}).start()
        return started[policy, kind]

    yield get
    for srv in started.values():
        srv.stop()


@pytest.fixture
def srv(servers: Callable[..., Server]) -> Server:
    return servers("django_sse_exec.auth.signed_token")


@pytest.fixture
def secret_id(srv: Server) -> str:
    """An execution that already holds a secret event."""
    execution_id = f"sec-{uuid.uuid4().hex[:12]}"
    srv.send(execution_id, ("secret", {"s": SECRET}))
    return execution_id


def login(srv: Server, username: str, staff: bool = False) -> tuple[int, dict[str, str]]:
    """Log in through the server; return the user's pk and its session cookie."""
    resp = httpx.post(srv.base_url + "/control/login", json={"username": username, "staff": staff})
    resp.raise_for_status()
    return resp.json()["pk"], {"sessionid": resp.cookies["sessionid"]}


def token_query(execution_id: str, **kwargs: object) -> str:
    return urlsplit(stream_url(execution_id, **kwargs)).query  # type: ignore[arg-type]


def events_path(execution_id: str) -> str:
    return f"/sse/executions/{execution_id}/events"


def assert_refused(resp: httpx.Response, status: int, reason: str | None = None) -> None:
    """A short plain-text refusal: the status, the reason, and nothing of any stream."""
    assert resp.status_code == status, (resp.status_code, resp.text[:200])
    assert not resp.headers.get("content-type", "").startswith("text/event-stream")
    body = resp.text
    assert SECRET not in body and "data:" not in body and "retry:" not in body
    assert "Traceback" not in body and "File \"" not in body
    if reason is not None:
        assert body == reason
        assert resp.headers["content-type"] == "text/plain; charset=utf-8"


def assert_expired(resp: httpx.Response) -> None:
    """The answer to an expired token: only ``stream-token-expired``, nothing of the stream."""
    assert resp.status_code == 200, (resp.status_code, resp.text[:200])
    assert resp.text == ('retry: 86400000\nevent: stream-token-expired\n'
                         'data: {"reason":"expired token"}\n\n')


def get(srv: Server, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(srv.base_url + path, timeout=30, **kwargs)  # type: ignore[arg-type]


async def read_secret(srv: Server, url: str, **headers: str) -> list[str]:
    """Positive control: the stream opens and replays the secret event."""
    async with SSEClient(srv.base_url + url, headers) as client:
        assert client.response.status_code == 200
        events = await client.wait_for(lambda ev: len(ev) >= 1)
    return [e.data for e in events]


# -- 1. tokens -----------------------------------------------------------------


async def test_valid_token_reads_the_execution(srv, secret_id):
    data = await read_secret(srv, stream_url(secret_id))
    assert SECRET in data[0]


@pytest.mark.parametrize("query, reason", [
    ("", "missing token"),
    ("?token=", "missing token"),
    ("?token=abc", "invalid token"),
    ("?token=" + "A" * 5000, "invalid token"),
    ("?tok%65n=abc", "invalid token"),
])
async def test_missing_and_garbage_tokens(srv, secret_id, query, reason):
    assert_refused(get(srv, events_path(secret_id) + query), 403, reason)


async def test_tampered_token(srv, secret_id):
    token = parse_qs(token_query(secret_id))["token"][0]
    value, _, signature = token.rpartition(":")
    for forged in (f"{value}:{signature[::-1]}", f"{value}x:{signature}", f"{value}:",
                   value, token[:-1]):
        resp = get(srv, events_path(secret_id), params={"token": forged})
        assert_refused(resp, 403, "invalid token")


async def test_refusals_do_not_reveal_whether_an_execution_exists(srv, secret_id):
    """Authorisation runs before the log is read: closed, open and unknown look alike."""
    closed = srv.close(secret_id)
    unknown = f"{secret_id}-never-used"
    for execution_id in (secret_id, unknown):
        assert_refused(get(srv, events_path(execution_id), headers={"Last-Event-ID": "99"}), 403,
                       "missing token")
        assert_refused(get(srv, f"{events_path(execution_id)}?{token_query(execution_id + 'x')}"),
                       403, "token is for another execution")
    assert get(srv, stream_url(secret_id),
               headers={"Last-Event-ID": str(closed)}).status_code == 204


async def test_token_of_another_execution(srv, secret_id):
    other = f"{secret_id}-other"
    assert_refused(get(srv, f"{events_path(secret_id)}?{token_query(other)}"), 403,
                   "token is for another execution")
    # ... and a prefix of the id is another execution too
    assert_refused(get(srv, f"{events_path(secret_id)}?{token_query(secret_id[:-1])}"), 403,
                   "token is for another execution")


async def test_expired_token(srv, secret_id):
    assert_expired(get(srv, expired_stream_url(secret_id)))


async def test_token_signed_with_another_key(srv, secret_id):
    from django.test import override_settings

    with override_settings(SECRET_KEY="some-other-deployment-secret-key-0123456789abcdef"):
        url = stream_url(secret_id)
    assert_refused(get(srv, url), 403, "invalid token")


@pytest.mark.parametrize("shape", ["valid-junk", "junk-valid", "valid-valid", "valid-empty"])
async def test_repeated_token_parameter(srv, secret_id, shape):
    valid = token_query(secret_id)
    parts = {"valid": valid, "junk": "token=junk", "empty": "token="}
    query = "&".join(parts[p] for p in shape.split("-"))
    assert_refused(get(srv, f"{events_path(secret_id)}?{query}"), 403, "repeated token")


async def test_user_bound_token(srv, secret_id):
    alice_pk, alice = login(srv, f"alice-{secret_id}")
    _, mallory = login(srv, f"mallory-{secret_id}")
    url = stream_url(secret_id, user=alice_pk)
    assert_refused(get(srv, url), 403, "login required")
    assert_refused(get(srv, url, cookies=mallory), 403, "token is for another user")
    assert_refused(get(srv, url, cookies={"sessionid": "forged-session-key"}), 403, "login required")
    cookie = "; ".join(f"{k}={v}" for k, v in alice.items())
    data = await read_secret(srv, url, Cookie=cookie)
    assert SECRET in data[0]


async def test_reconnects_work_for_the_tokens_lifetime_then_stop(srv, secret_id):
    """An open stream outlives its token (renewed); a reconnect with it after that is told
    it expired."""
    url = stream_url(secret_id, max_age=3)
    issued = time.time()
    async with SSEClient(srv.base_url + url) as first:
        await first.wait_for(lambda ev: len(ev) >= 1)
    await srv.asend(secret_id, ("step", 2))
    async with SSEClient(srv.base_url + url, {"Last-Event-ID": "1"}) as again:
        assert again.response.status_code == 200
        events = await again.wait_for(lambda ev: len(ev) >= 1)
        assert [e.int_id for e in events] == [2]
        while time.time() < issued + 5:  # the token expires while this stream is open
            await asyncio.sleep(0.2)
        await srv.asend(secret_id, ("step", 3))
        events = await again.wait_for(lambda ev: names(ev).count("step") >= 2)
        assert [e.int_id for e in events if e.event == "step"] == [2, 3]
    assert_expired(get(srv, url, headers={"Last-Event-ID": "3"}))


# -- 2. policies -----------------------------------------------------------------


async def test_authenticated_user_policy_uses_the_session_cookie(servers, srv, secret_id):
    session_srv = servers("django_sse_exec.auth.authenticated_user")
    path = events_path(secret_id)
    session_srv.send(secret_id, ("secret", {"s": SECRET}))
    assert_refused(get(session_srv, path), 403, "login required")
    assert_refused(get(session_srv, path, cookies={"sessionid": "x" * 32}), 403, "login required")
    assert_refused(get(session_srv, f"{path}?{token_query(secret_id)}"), 403, "login required")
    _, cookies = login(srv, f"bob-{secret_id}")  # sessions live in the shared database
    data = await read_secret(session_srv, path, Cookie=f"sessionid={cookies['sessionid']}")
    assert SECRET in data[0]


async def test_staff_only_policy(servers, srv, secret_id):
    staff_srv = servers("django_sse_exec.auth.staff_only")
    path = events_path(secret_id)
    staff_srv.send(secret_id, ("secret", {"s": SECRET}))
    _, plain = login(srv, f"plain-{secret_id}")
    _, staff = login(srv, f"staff-{secret_id}", staff=True)
    assert_refused(get(staff_srv, path), 403, "staff only")
    assert_refused(get(staff_srv, path, cookies=plain), 403, "staff only")
    data = await read_secret(staff_srv, path, Cookie=f"sessionid={staff['sessionid']}")
    assert SECRET in data[0]


async def test_broken_policy_denies_without_a_traceback(servers, secret_id):
    broken = servers("no_such_module.policy")
    assert_refused(get(broken, f"{events_path(secret_id)}?{token_query(secret_id)}"), 403,
                   "authorization failed")
    assert "authorization policy failed" in broken.log()  # logged for the operator


async def test_allow_any_policy_is_open_and_the_check_warns(servers, secret_id):
    open_srv = servers("django_sse_exec.auth.allow_any")
    open_srv.send(secret_id, ("secret", {"s": SECRET}))
    assert SECRET in (await read_secret(open_srv, events_path(secret_id)))[0]
    env = {**os.environ, "SSE_EXEC_JSON": '{"AUTHORIZE": "django_sse_exec.auth.allow_any"}'}
    check = subprocess.run([sys.executable, "manage.py", "check", "--settings", "tests.settings"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "django_sse_exec.W003" in check.stdout + check.stderr


# -- 4. input hardening ------------------------------------------------------------


@pytest.mark.parametrize("bad_path", [
    "%2E%2E", "%2E", "..%2Fx", "a%3Ab", "%2A", "a%2A", "%7Bx%7D", "a%20b", "%20a", "a%09b",
    "a%00b", "a%0Ab", "a%0D%0Aevent:%20x", "exec%E2%80%901", "ex%D0%B5c", "%EF%BD%81",
    "%FF", "%C0%AE%C0%AE", "%25", "-x", "_x", "a" * 65, "a" * 5000,
])
async def test_malformed_execution_ids_are_404(srv, bad_path):
    resp = get(srv, f"/sse/executions/{bad_path}/events?token=x")
    assert_refused(resp, 404)


@pytest.mark.parametrize("header", [
    "-1", "-99999999999", "99999999999999999999999999", "abc", "1e3", "0x10", "", "1.0",
    "9" * 10_000, "\u00e9\u00e9",
])
async def test_last_event_id_garbage_replays_everything(srv, secret_id, header):
    async with SSEClient(srv.base_url + stream_url(secret_id),
                         {"Last-Event-ID": header.encode("latin-1")}) as client:  # type: ignore[dict-item]
        assert client.response.status_code == 200
        events = await client.wait_for(lambda ev: len(ev) >= 1)
        assert events[0].int_id == 1 and SECRET in events[0].data


@pytest.mark.parametrize("query", ["last_event_id=-5", "last_event_id=abc",
                                   "last_event_id=1&last_event_id=zz",
                                   "last_event_id=" + "9" * 5000])
async def test_last_event_id_query_garbage_replays_everything(srv, secret_id, query):
    async with SSEClient(f"{srv.base_url}{stream_url(secret_id)}&{query}") as client:
        events = await client.wait_for(lambda ev: len(ev) >= 1)
        assert events[0].int_id == 1


def raw_get(srv: Server, target: str, extra: bytes = b"") -> bytes:
    """Send a GET with ``target`` as is (no client-side URL limits); return what comes back."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Connection: close\r\n" + extra + b"\r\n")
        data = b""
        while len(data) < 65536:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and (not data.startswith(b"HTTP/1.1 200")
                                          or b": connected" in data):
                break
    return data


def status_of(answer: bytes) -> int | None:
    """The status code of a raw answer, None when the server closed without one."""
    return int(answer.split(b" ", 2)[1]) if answer else None


def huge_requests(execution_id: str) -> list[tuple[str, bytes]]:
    """A 100 KB query string and a 100 KB header on an otherwise valid stream request."""
    path = f"{events_path(execution_id)}?{token_query(execution_id)}"
    return [(f"{path}&pad={'a' * 100_000}", b""), (path, b"X-Pad: " + b"a" * 100_000 + b"\r\n")]


async def test_huge_and_repeated_query_strings_do_not_crash(srv, secret_id):
    path = events_path(secret_id)
    # too many parameters: Django refuses the query string with 400
    many = "&".join(f"p{i}=1" for i in range(1500))
    answer = raw_get(srv, f"{path}?{token_query(secret_id)}&{many}")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    # 100 KB of query string, 100 KB of header: daphne drops the request unanswered
    for target, extra in huge_requests(secret_id):
        answer = raw_get(srv, target, extra)
        assert answer == b"" or 400 <= status_of(answer) < 500, answer[:100]
        assert SECRET.encode() not in answer
    # a query string just under the line limit is fine, the extra parameters ignored
    data = await read_secret(srv, f"{stream_url(secret_id)}&pad={'a' * 15_000}")
    assert SECRET in data[0]
    assert '" 500 ' not in srv.log()


async def test_injected_event_names_and_bad_data_are_refused_and_nothing_is_logged(srv):
    execution_id = f"inj-{uuid.uuid4().hex[:12]}"
    async with SSEClient(srv.base_url + stream_url(execution_id)) as client:
        await client.read_chunk()
        for event, data in [("x\ndata: forged", 1), ("x\r\nid: 99", 1), ("x\0", 1),
                            ("stream-closed", 1), ("stream-reset", 1), ("ok", "y" * 70_000)]:
            resp = httpx.post(srv.base_url + "/control/send", timeout=30,
                              json={"execution_id": execution_id, "events": [[event, data]]})
            assert resp.status_code == 400, (event, resp.text)
        for data in ("NaN", '"\\ud800"'):  # raw JSON: no client-side encoder would send these
            body = '{"execution_id": "%s", "events": [["ok", %s]]}' % (execution_id, data)
            resp = httpx.post(srv.base_url + "/control/send", timeout=30, content=body.encode())
            assert resp.status_code == 400, (data[:20], resp.status_code)
        assert srv.send(execution_id, ("ok", "after")) == [1]  # nothing was logged before
        events = await client.wait_for(lambda ev: len(ev) >= 1)
        assert [(e.int_id, e.event, e.json) for e in events] == [(1, "ok", "after")]
        assert b"forged" not in client.raw and b"id: 99" not in client.raw


async def test_other_methods_are_refused(srv, secret_id):
    url = srv.base_url + stream_url(secret_id)
    for method in ("POST", "PUT", "DELETE"):
        resp = httpx.request(method, url, timeout=30)
        assert_refused(resp, 405, "method not allowed")


# -- 4b. execution ids never address Redis keys or groups outside the prefix ----------


async def test_redis_keys_and_groups_stay_inside_the_prefix(make_server, requires_redis):
    """Through a real Redis-backed server: every key an execution id produced is inside the
    store's prefix (``<prefix>:{<id>}:<part>``) or is the layer's group ``<prefix>.<id>``."""
    import redis

    mark = f"k{uuid.uuid4().hex[:10]}"
    prefix = f"sec_{mark}"
    srv = make_server("daphne", env={"TEST_LAYER": "redis", "REDIS_URL": requires_redis,
                                     "TEST_KEY_PREFIX": prefix})
    ids = [mark, f"{mark}..x", f"{mark}.", f"{mark}-_.9", (mark + "x" * 64)[:64]]
    client = redis.Redis.from_url(requires_redis)
    try:
        for execution_id in ids:
            srv.send(execution_id, ("e", {"s": SECRET}))
        srv.close(ids[1])
        async with SSEClient(srv.base_url + stream_url(ids[0])) as stream:
            await stream.wait_for(lambda ev: len(ev) >= 1)
            for bad in (f"{mark}%3Aevil", f"%7B{mark}%7D", f"{mark}%2A", f"{mark}%7D:evil",
                        f"{mark}%20evil", f"..%2F{mark}"):
                assert_refused(get(srv, f"/sse/executions/{bad}/events?{token_query(mark)}"), 404)
            keys = sorted(k.decode() for k in client.scan_iter(match=f"*{mark}*", count=1000))
        store_keys = {f"{prefix}:{{{i}}}:{part}" for i in ids
                      for part in ("last", "events", "bytes", "closed", "members")}
        store_keys.add(f"{prefix}:epoch")
        group_keys = {f"asgi_{prefix}:group:{prefix}.{i}" for i in ids}
        assert keys, "the server wrote nothing to Redis"
        assert {f"{prefix}:{{{i}}}:last" for i in ids} <= set(keys)
        assert f"asgi_{prefix}:group:{prefix}.{ids[0]}" in keys
        assert set(keys) <= store_keys | group_keys, set(keys) - store_keys - group_keys
        assert not [k for k in keys if "evil" in k or "*" in k]
    finally:
        for key in client.scan_iter(match=f"*{mark}*", count=1000):
            client.delete(key)
        client.close()


# -- the same attacks through uvicorn ----------------------------------------------------


async def test_uvicorn_refuses_the_same_attacks(servers):
    uv = servers(kind="uvicorn")
    execution_id = f"sec-{uuid.uuid4().hex[:12]}"
    uv.send(execution_id, ("secret", {"s": SECRET}))
    path = events_path(execution_id)
    token = parse_qs(token_query(execution_id))["token"][0]
    for query, reason in [
        ("", "missing token"),
        (f"?token={token[:-1]}", "invalid token"),
        (f"?{token_query(execution_id + 'x')}", "token is for another execution"),
        (f"?{token_query(execution_id)}&token=junk", "repeated token"),
    ]:
        assert_refused(get(uv, path + query), 403, reason)
    assert_expired(get(uv, expired_stream_url(execution_id)))
    for bad in ("%2E%2E", "a%3Ab", "%7Bx%7D", "exec%E2%80%901", "a" * 65):
        assert_refused(get(uv, f"/sse/executions/{bad}/events?{token_query(execution_id)}"), 404)
    many = "&".join(f"p{i}=1" for i in range(1500))
    assert status_of(raw_get(uv, f"{path}?{token_query(execution_id)}&{many}")) == 400
    for target, extra in huge_requests(execution_id):  # uvicorn accepts them: a normal stream
        assert status_of(raw_get(uv, target, extra)) in (200, 400, 413, 414, 431)
    async with SSEClient(uv.base_url + stream_url(execution_id), {"Last-Event-ID": "9" * 10_000}) as c:
        events = await c.wait_for(lambda ev: len(ev) >= 1)
        assert events[0].int_id == 1 and SECRET in events[0].data
    assert "Traceback" not in uv.log()

