"""The example project is safe to copy: each finding of the attack run, through a real daphne.

* it hands out stream URLs only for executions the browser started (and, with a
  user logged in, only that user's), never for an id it is merely told;
* no published secret key; DEBUG off unless asked for; secrets masked on the
  debug page;
* no cross-site request can start an execution (JSON only: 415) or cancel one (only
  the signed cancel URL handed to the browser that started it does: 403 otherwise);
* inputs are validated (400, never 500) and concurrent executions capped (429);
* pages and JSON carrying tokens are never cached.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from django.core import signing
from django.test import override_settings

from django_sse_exec.auth.policies import SALT
from tests.conftest import migrated_db_env
from tests.helpers import wait_until_sync
from tests.server import ROOT, Server
from tests.sse import SSEClient

PUBLISHED_KEY = "example-project-insecure-key-change-me"


@pytest.fixture(scope="module")
def db_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return migrated_db_env(tmp_path_factory, "demo-security")


@pytest.fixture(scope="module")
def demo(db_env: dict[str, str]) -> Iterator[Server]:
    with Server("daphne", env={**db_env, "DEMO_MAX_RUNNING": "3"}) as srv:
        yield srv


def browser(srv: Server) -> httpx.Client:
    """A fresh browser: its own cookies."""
    return httpx.Client(base_url=srv.base_url, timeout=30)


def start(client: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = client.post("/demo/executions", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def cancel(client: httpx.Client, execution_id: str) -> httpx.Response:
    """Cancel as the page does: POST to the execution's cancel URL, which only the browser
    that started it is given (any other posts to the endpoint without a token)."""
    detail = client.get(f"/demo/executions/{execution_id}")
    url = detail.json().get("cancelUrl") if detail.status_code == 200 else None
    return client.post(url or f"/sse/executions/{execution_id}/cancel")


def feed_of(page: str) -> str:
    """The feed whose stream the page's recent list follows."""
    url = re.search(r'data-feed-url="([^"]+)"', page).group(1)
    return unquote(url.split("/sse/feeds/")[1].split("/events")[0])


def token_payload(stream_url: str) -> dict[str, Any]:
    token = parse_qs(urlsplit(stream_url).query)["token"][0]
    return signing.loads(token, salt=SALT)


# -- 2. stream URLs only for executions the caller started -------------------------


async def test_an_execution_sent_by_another_process_gets_no_stream_url(demo):
    """The finding: GET /demo/executions/<id> and /?execution=<id> minted a valid token
    for any id, e.g. one a management command (another process) was sending."""
    execution_id = f"payroll-{uuid.uuid4().hex[:8]}"
    demo.send(execution_id, ("secret", {"salary": 123456}))
    with browser(demo) as client:
        detail = client.get(f"/demo/executions/{execution_id}")
        assert detail.status_code == 404 and "token" not in detail.text
        page = client.get(f"/?execution={execution_id}")
        assert page.status_code == 200 and f"executions/{execution_id}/events" not in page.text
        assert 'data-stream-url=""' in page.text
        assert cancel(client, execution_id).status_code == 403
        # a valid stream token in a shared link does open it (only SECRET_KEY mints one)
        from django_sse_exec import stream_url

        link = parse_qs(urlsplit(stream_url(execution_id)).query)["token"][0]
        forged = client.get("/", params={"execution": execution_id, "token": link[:-2] + "xx"})
        assert 'data-stream-url=""' in forged.text
        shared = client.get("/", params={"execution": execution_id, "token": link})
        assert f'data-stream-url="/sse/executions/{execution_id}/events?token=' in shared.text
        # ... for as long as the link's token, and no more (see the share-link test)
        assert client.get(f"/demo/executions/{execution_id}").status_code == 404


async def test_one_browser_cannot_see_or_cancel_another_browsers_execution(demo):
    with browser(demo) as alice, browser(demo) as mallory:
        execution_id = start(alice, tasks=50, delayMs=200)["executionId"]
        try:
            assert execution_id in [e["executionId"] for e in
                                    alice.get("/demo/executions").json()["executions"]]
            assert execution_id not in [e["executionId"] for e in
                                        mallory.get("/demo/executions").json()["executions"]]
            assert mallory.get(f"/demo/executions/{execution_id}").status_code == 404
            page = mallory.get(f"/?execution={execution_id}").text
            assert f"executions/{execution_id}/events" not in page
            # Each browser's recent list follows a feed of its own: the other's is not in it.
            feeds = [feed_of(client.get("/").text) for client in (alice, mallory)]
            assert feeds[0] != feeds[1] and all(f.startswith("browser:") for f in feeds)
            assert cancel(mallory, execution_id).status_code == 403
            assert alice.get(f"/demo/executions/{execution_id}").status_code == 200
        finally:
            assert cancel(alice, execution_id).status_code == 202


async def test_a_logged_in_user_gets_user_bound_tokens_and_only_their_executions(demo):
    with browser(demo) as client:
        login = client.post("/control/login", json={"username": f"u-{uuid.uuid4().hex[:8]}"})
        pk = login.json()["pk"]
        started = start(client, tasks=1, delayMs=0)
        assert token_payload(started["streamUrl"])["u"] == str(pk)
        # Without that user's session the token is refused.
        async with SSEClient(demo.base_url + started["streamUrl"]) as anonymous:
            assert anonymous.response.status_code == 403
        cookie = f"sessionid={client.cookies['sessionid']}"
        async with SSEClient(demo.base_url + started["streamUrl"], {"Cookie": cookie}) as own:
            assert own.response.status_code == 200
        # Another user in the same browser sees none of it.
        client.post("/control/login", json={"username": f"v-{uuid.uuid4().hex[:8]}"})
        assert client.get(f"/demo/executions/{started['executionId']}").status_code == 404
        assert client.get("/demo/executions").json()["executions"] == []


def stream_token_of(page: str) -> str:
    """The token of the stream URL a page (either dashboard) hands its browser."""
    url = re.search(r'(?:data-stream-url|sse-connect)="([^"]+)"', page).group(1)
    return parse_qs(urlsplit(url.replace("&amp;", "&")).query)["token"][0]


async def test_a_share_link_grants_viewing_for_its_lifetime_and_never_cancel(demo):
    """The finding: a read-only share link granted cancel rights and outlived its token
    (the page remembered the execution in the ownership cookie and minted new tokens)."""
    from django_sse_exec import stream_url

    with browser(demo) as alice, browser(demo) as bob:
        execution_id = start(alice, tasks=60, delayMs=500)["executionId"]
        try:
            link = parse_qs(urlsplit(stream_url(execution_id, max_age=4)).query)["token"][0]
            for page in ("/", "/htmx/"):
                shared = bob.get(page, params={"execution": execution_id, "token": link})
                assert shared.status_code == 200 and stream_token_of(shared.text) == link
                assert "demo_executions" not in shared.headers.get("set-cookie", "")
                if page == "/htmx/":  # (the JSON dashboard's button stays hidden:
                    assert "Cancel</button>" not in shared.text  # it has no cancel URL)
                assert "cancel?token=" not in shared.text
                cache = shared.headers["cache-control"]
                assert "no-store" in cache and "private" in cache, cache
            # Viewing only: no status API, no cancel on either dashboard, nothing without the link.
            assert bob.get(f"/demo/executions/{execution_id}").status_code == 404
            assert cancel(bob, execution_id).status_code == 403
            bob.get("/htmx/")  # a CSRF token of bob's own is no cancel grant either
            assert bob.post(f"/sse/executions/{execution_id}/cancel", data={
                "csrfmiddlewaretoken": bob.cookies["csrftoken"]},
                headers={"Referer": f"{demo.base_url}/htmx/"}).status_code == 403
            assert alice.get(f"/demo/executions/{execution_id}").json()["status"] == "running"
            for page in ("/", "/htmx/"):
                again = bob.get(page, params={"execution": execution_id}).text
                assert f"executions/{execution_id}/events" not in again
            # While the token lives, its stream works; once it expires, stream and link are dead.
            async with SSEClient(demo.base_url + f"/sse/executions/{execution_id}/events?token={link}") as live:
                assert live.response.status_code == 200
            time.sleep(5)
            async with SSEClient(demo.base_url + f"/sse/executions/{execution_id}/events?token={link}") as late:
                events = await late.read_until_closed(timeout=10)  # told so, and nothing else
            assert [e.event for e in events] == ["stream-token-expired"], late.raw
            for page in ("/", "/htmx/"):
                expired = bob.get(page, params={"execution": execution_id, "token": link})
                assert f"executions/{execution_id}/events" not in expired.text
        finally:
            assert cancel(alice, execution_id).status_code == 202


# -- 3. cross-site requests, inputs, caps ---------------------------------------


#: What a cross-site form (or a fetch without a preflight) can send.
CROSS_SITE_BODIES: dict[str, dict[str, Any]] = {
    "text/plain": {"content": b'{"tasks": 1}', "headers": {"Content-Type": "text/plain"}},
    "urlencoded": {"data": {"tasks": "1"}},
    "multipart": {"files": {"tasks": ("tasks", b"1", "text/plain")}},
    "no type": {"content": b'{"tasks": 1}'},
}


@pytest.mark.parametrize("kind", list(CROSS_SITE_BODIES))
async def test_cross_site_forms_cannot_start_or_cancel(demo, kind):
    """The finding: a text/plain cross-origin POST (what a form or no-preflight fetch
    sends) started an execution. JSON-only endpoints answer 415 and start nothing."""
    body = CROSS_SITE_BODIES[kind]
    with browser(demo) as client:
        mine = start(client, tasks=30, delayMs=200)["executionId"]
        try:
            def listed() -> list[str]:  # ids only: the running execution's counts move meanwhile
                return [e["executionId"] for e in client.get("/demo/executions").json()["executions"]]

            before = listed()
            resp = client.post("/demo/executions", **body)
            assert resp.status_code == 415
            assert listed() == before
            refused = client.post(f"/sse/executions/{mine}/cancel", **body)
            assert refused.status_code == 403  # no signed cancel URL, no cancel
        finally:
            assert cancel(client, mine).status_code == 202


@pytest.mark.parametrize("body", [
    b'{"failRate": 1e400}', b'{"tasks": 1e400}', b'{"failRate": NaN}',
    b'{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}",        # deep nesting within the size limit
    b"[" * 100_000 + b"]" * 100_000,                     # deep and large
    b'{"delayMs": 60000}', b'{"tasks": 200, "delayMs": 5000}', b'{"tasks": 10e10}',
    b'{"tasks": "5"}', b"\xff\xfe",
])
async def test_bad_inputs_get_400_never_500(demo, body):
    with browser(demo) as client:
        resp = client.post("/demo/executions", content=body,
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text[:200]
    assert "error" in resp.json()


async def test_concurrent_executions_are_capped(demo):
    with browser(demo) as client:
        started: list[str] = []
        try:
            for _ in range(10):
                resp = client.post("/demo/executions", json={"tasks": 100, "delayMs": 1000})
                if resp.status_code != 201:
                    break
                started.append(resp.json()["executionId"])
            assert len(started) <= 3  # DEMO_MAX_RUNNING of this server
            assert resp.status_code == 429 and resp.headers["retry-after"] == "10"
            assert "running" in resp.json()["error"]
        finally:
            for execution_id in started:
                cancel(client, execution_id)
        wait_until_sync(lambda: client.post("/demo/executions", json={
            "tasks": 1, "delayMs": 0}).status_code == 201, 30,
            "the cap to free up after the cancels", interval=0.1)


async def test_pages_and_json_with_tokens_are_not_cached(demo):
    with browser(demo) as client:
        started = start(client, tasks=1, delayMs=0)
        for resp in (client.post("/demo/executions", json={"tasks": 1, "delayMs": 0}),
                     client.get(f"/demo/executions/{started['executionId']}"),
                     client.get(f"/?execution={started['executionId']}")):
            assert "token=" in resp.text
            cache = resp.headers["cache-control"]
            assert "no-store" in cache and "private" in cache, cache


# -- 3. secret key, DEBUG, the debug page --------------------------------------


def settings_of(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    """Load example_project.settings in a fresh process with ``env``; run ``code``."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DJANGO_SETTINGS_MODULE")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); "
         "from django.conf import settings; " + code],
        cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "example_project.settings", **env},
        capture_output=True, text=True, timeout=60)


def test_the_published_secret_key_is_refused_unless_debug():
    refused = settings_of({"DJANGO_SECRET_KEY": PUBLISHED_KEY}, "print(settings.SECRET_KEY)")
    assert refused.returncode != 0 and "published key" in refused.stderr
    debug = settings_of({"DJANGO_SECRET_KEY": PUBLISHED_KEY, "DJANGO_DEBUG": "1"},
                        "print(settings.DEBUG)")
    assert debug.returncode == 0 and debug.stdout.strip() == "True"


def test_debug_is_off_and_the_key_is_never_the_published_one_by_default():
    result = settings_of({}, "print(settings.DEBUG, settings.SECRET_KEY)")
    assert result.returncode == 0, result.stderr
    debug, key = result.stdout.split()
    assert debug == "False" and key != PUBLISHED_KEY and len(key) >= 40


async def test_tokens_forged_with_the_published_key_are_refused(tmp_path):
    """The finding: with no DJANGO_SECRET_KEY, tokens forged with the published key were
    accepted. A daphne on the example project's own settings refuses them."""
    env = {"DJANGO_SETTINGS_MODULE": "example_project.settings",
           "DJANGO_DB_PATH": str(tmp_path / "db.sqlite3")}
    execution_id = f"forged-{uuid.uuid4().hex[:8]}"
    with override_settings(SECRET_KEY=PUBLISHED_KEY):
        from django_sse_exec import stream_url

        forged = stream_url(execution_id)
    with Server("daphne", env={k: v for k, v in env.items()}) as srv:
        resp = httpx.get(srv.base_url + forged)
    assert resp.status_code == 403 and resp.text == "invalid token"


def test_debug_page_masks_redis_broker_and_layer_passwords():
    from django.views.debug import get_default_exception_reporter_filter

    password = "hunter2-" + uuid.uuid4().hex[:6]
    url = f"redis://:{password}@redis.internal:6379/0"
    with override_settings(REDIS_URL=url, CELERY_BROKER_URL=url, CHANNEL_LAYERS={"default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url, "socket_timeout": 30}]}}}):
        safe = get_default_exception_reporter_filter().get_safe_settings()
    assert password not in repr(safe)
    assert safe["REDIS_URL"] == safe["CELERY_BROKER_URL"] == "********************"


# -- 5. /metrics and the rate of starts ------------------------------------------------

METRICS_TOKEN = "scrape-me-" + uuid.uuid4().hex
SCRAPER_ADDRESS = "10.9.9.9"


@pytest.fixture(scope="module")
def locked(db_env: dict[str, str]) -> Iterator[Server]:
    """The example project's defaults for /metrics (staff only) plus a token and an
    address, 3 starts a minute, and client addresses from X-Forwarded-For (so a test
    can be several visitors)."""
    env = {**db_env, "TEST_METRICS_ADDRESSES": SCRAPER_ADDRESS, "DEMO_METRICS_TOKEN": METRICS_TOKEN,
           "DEMO_STARTS_PER_MINUTE": "3"}
    with Server("daphne", env=env, extra_args=["--proxy-headers"]) as srv:
        yield srv


def test_metrics_answer_only_staff_or_the_configured_scraper(locked):
    """The finding: /metrics was open to anyone."""
    with browser(locked) as client:
        assert client.get("/metrics").status_code == 403
        for header in (f"Bearer {METRICS_TOKEN}x", f"Basic {METRICS_TOKEN}", "Bearer"):
            assert client.get("/metrics", headers={"Authorization": header}).status_code == 403
        scrape = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scrape.status_code == 200 and "sse_exec_" in scrape.text
        assert client.get("/metrics", headers={"X-Forwarded-For": SCRAPER_ADDRESS}).status_code == 200
        assert client.get("/metrics", headers={"X-Forwarded-For": "10.9.9.8"}).status_code == 403
        client.post("/control/login", json={"username": f"n-{uuid.uuid4().hex[:8]}"})
        assert client.get("/metrics").status_code == 403  # logged in, not staff
        client.post("/control/login", json={"username": f"s-{uuid.uuid4().hex[:8]}", "staff": True})
        assert client.get("/metrics").status_code == 200


def test_the_example_projects_own_defaults():
    """Staff only for /metrics, 10 starts a minute per visitor, unless configured."""
    shown = settings_of({}, "print(settings.DEMO_METRICS_TOKEN == '', settings.DEMO_METRICS_ADDRESSES,"
                            " settings.DEMO_STARTS_PER_MINUTE)")
    assert shown.stdout.split() == ["True", "[]", "10"], shown.stderr


def test_starts_are_rate_limited_per_visitor(locked):
    """Three starts a minute for one visitor, on either dashboard; another visitor is not held up."""
    visitor = {"X-Forwarded-For": "10.1.1.1"}
    with browser(locked) as client:
        for _ in range(3):
            resp = client.post("/demo/executions", json={"tasks": 1, "delayMs": 0}, headers=visitor)
            assert resp.status_code == 201, resp.text
        over = client.post("/demo/executions", json={"tasks": 1, "delayMs": 0}, headers=visitor)
        assert over.status_code == 429 and "at most 3 starts a minute" in over.json()["error"]
        assert 1 <= int(over.headers["retry-after"]) <= 60
        client.get("/htmx/", headers=visitor)
        form = client.post("/htmx/start", headers={**visitor, "Referer": f"{locked.base_url}/htmx/"},
                           data={"csrfmiddlewaretoken": client.cookies["csrftoken"], "tasks": "1"})
        assert form.status_code == 429 and "at most 3 starts a minute" in form.text
        other = client.post("/demo/executions", json={"tasks": 1, "delayMs": 0},
                            headers={"X-Forwarded-For": "10.1.1.2"})
        assert other.status_code == 201
