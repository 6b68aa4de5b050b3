"""The ASGI fast path (``django_sse_exec.asgi.wrap``) through real daphne and uvicorn.

``tests/test_stream.py`` runs every stream rule against both entry points; these
tests check what is specific to the fast path: that it really bypasses Django's
machinery for the stream, that everything else still reaches Django, that the
lazy session/user of the policies exists, and that disconnects clean up.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.conftest import entry_point_env
from tests.helpers import wait_until
from tests.server import ROOT
from tests.sse import SSEClient

pytestmark = pytest.mark.asyncio

FAST = entry_point_env("fast")


def streams_and_groups(srv) -> tuple[int, int]:
    stats = srv.hub()
    return stats["streams"], stats["groups"]


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_stream_skips_middleware_and_other_urls_reach_django(make_server, url_for,
                                                                   execution_id, kind):
    fast = make_server(kind, env=FAST)
    view = make_server(kind)
    # The view's response passes SecurityMiddleware, which adds Cross-Origin-Opener-Policy;
    # the fast path's does not: that is how we know the stream did not go through Django.
    # (Both send the app's own security headers, e.g. nosniff.)
    async with SSEClient(url_for(view, execution_id)) as client:
        assert client.response.headers.get("cross-origin-opener-policy") == "same-origin"
        assert client.response.headers.get("x-content-type-options") == "nosniff"
    async with SSEClient(url_for(fast, execution_id)) as client:
        assert client.response.status_code == 200
        assert "cross-origin-opener-policy" not in client.response.headers
        assert client.response.headers.get("x-content-type-options") == "nosniff"
        assert client.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert await client.read_chunk() == b"retry: 2000\n: connected\n\n"
        await fast.asend(execution_id, *[("step", {"n": i}) for i in range(5)])
        events = await client.wait_for(lambda ev: len(ev) >= 5)
        assert [e.json["n"] for e in events] == list(range(5))
        fast.close(execution_id)
        events = await client.read_until_closed()
        assert events[-1].event == "stream-closed"
    # Everything else is Django's: control endpoints, other methods, lookalike paths.
    assert streams_and_groups(fast) == (0, 0)
    assert httpx.post(url_for(fast, execution_id)).status_code == 405
    lookalike = f"{fast.base_url}/sse/executions/{execution_id}/events/more"
    assert httpx.get(lookalike).status_code == 404
    resp = httpx.get(url_for(fast, execution_id), headers={"Last-Event-ID": "6"})
    assert resp.status_code == 204


async def test_same_statuses_and_bodies_as_the_view(make_server, url_for, execution_id):
    fast = make_server("daphne", env=FAST)
    view = make_server("daphne")
    for srv in (fast, view):
        srv.close(execution_id)  # each server has its own in-memory log
    cases = [
        ("/sse/executions/{id}/events", {}),                 # no token: 403
        ("/sse/executions/{id}/events?token=abc", {}),       # bad token: 403
        ("/sse/executions/bad%20id/events?token=x", {}),     # malformed id: 404
        (None, {"Last-Event-ID": "1"}),                      # closed, nothing new: 204
        (None, {"Last-Event-ID": "garbage"}),                # full replay: 200
    ]
    for path, headers in cases:
        results = []
        for srv in (fast, view):
            url = (srv.base_url + path.format(id=execution_id)) if path else url_for(srv, execution_id)
            async with httpx.AsyncClient(timeout=10) as client:
                resp = await client.get(url, headers=headers)
            content_type = resp.headers.get("content-type") if resp.status_code != 204 else None
            results.append((resp.status_code, resp.content, content_type))
        assert results[0] == results[1], (path, headers, results)


async def test_session_policies_get_a_lazy_user(make_server, execution_id):
    """A user policy sees ``request.user``/``auser()`` (anonymous here), not a missing middleware."""
    srv = make_server("daphne", env=FAST,
                      sse_exec={"AUTHORIZE": "django_sse_exec.auth.authenticated_user"})
    resp = httpx.get(f"{srv.base_url}/sse/executions/{execution_id}/events")
    assert resp.status_code == 403
    assert resp.text == "login required"


async def test_logged_in_session_is_accepted(make_server, execution_id, tmp_path):
    """A real login (session cookie, database) passes the user policy on the fast path."""
    db = str(tmp_path / "db.sqlite3")
    env = {**FAST, "TEST_DB_PATH": db, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env={**os.environ, **env},
                   cwd=ROOT, check=True)
    login = (
        "from django.contrib.auth.models import User;"
        "from django.contrib.sessions.backends.db import SessionStore;"
        "from django.contrib.auth import SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY;"
        "u = User.objects.create_user('ada', password='pw');"
        "s = SessionStore(); s[SESSION_KEY] = str(u.pk);"
        "s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend';"
        "s[HASH_SESSION_KEY] = u.get_session_auth_hash(); s.create(); print(s.session_key)"
    )
    session_key = subprocess.run([*manage, "shell", "-c", login], env={**os.environ, **env},
                                 cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()[-1]
    srv = make_server("daphne", env=env,
                      sse_exec={"AUTHORIZE": "django_sse_exec.auth.authenticated_user"})
    url = f"{srv.base_url}/sse/executions/{execution_id}/events"
    async with SSEClient(url, {"Cookie": f"sessionid={session_key}"}) as client:
        assert client.response.status_code == 200
        assert await client.read_chunk() == b"retry: 2000\n: connected\n\n"
    assert httpx.get(url, cookies={"sessionid": "forged"}).text == "login required"


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_disconnects_release_everything(make_server, url_for, execution_id, kind):
    srv = make_server(kind, env=FAST)
    clients = [SSEClient(url_for(srv, f"{execution_id}-{i % 5}")) for i in range(40)]
    for client in clients:
        await client.connect()
        await client.read_chunk()
    assert streams_and_groups(srv) == (40, 5)
    for client in clients[:20]:
        await client.close()
    await wait_until(lambda: srv.hub()["streams"] == 20)
    # The survivors still stream.
    await srv.asend(f"{execution_id}-0", ("still", 1))
    survivor = next(c for i, c in enumerate(clients) if i >= 20 and i % 5 == 0)
    events = await survivor.wait_for(lambda ev: len(ev) >= 1)
    assert events[0].json == 1
    for client in clients[20:]:
        await client.close()
    await wait_until(lambda: streams_and_groups(srv) == (0, 0))
    assert all(srv.count(f"{execution_id}-{i}") == 0 for i in range(5))


@pytest.mark.parametrize("entry", ["view", "fast"])
async def test_store_failure_at_connect_ends_the_stream_cleanly(make_server, url_for,
                                                                execution_id, entry):
    """With the store unreachable a stream ends at once with a retry hint: no broken connection."""
    unreachable = {"STORE": "redis", "REDIS_URL": "redis://127.0.0.1:1/0"}
    srv = make_server("daphne", env=entry_point_env(entry), sse_exec=unreachable)
    async with SSEClient(url_for(srv, execution_id)) as client:
        assert client.response.status_code == 200
        await client.read_until_closed(timeout=20)
        assert client.raw == (b"retry: 2000\n: reconnect (event store unavailable: redis; Redis "
                              b"at redis://127.0.0.1:1/0 unreachable, check SSE_EXEC['REDIS_URL'])"
                              b"\n\n")
    assert "Redis at redis://127.0.0.1:1/0 is unreachable (StoreUnavailable" in srv.log()
