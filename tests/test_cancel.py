"""The cancel endpoint through real daphne servers: signed cancel URLs (no CSRF), their
own purpose (a stream token cannot cancel, a cancel token cannot read), user binding,
session-authorised cancels (CSRF required), answers for htmx and plain forms, and the
``execution-cancel-requested`` event (who as a role and an opaque id, once)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from django_sse_exec import cancel_url, stream_url
from django_sse_exec.execution.cancel import requester_id
from tests.helpers import names
from tests.sse import SSEClient
from tests.test_hardening import db_env, login, servers  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio


def new_id() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


def started(srv, execution_id: str) -> None:
    srv.send(execution_id, ("execution-start", {"executionId": execution_id, "totalTasks": 1,
                                                "startTime": 0}))


async def requests_in_log(srv, execution_id: str) -> list:
    async with SSEClient(srv.base_url + stream_url(execution_id)) as client:
        events = await client.wait_for(lambda got: len(got) >= 1)
        await client.close()
    return [e for e in events if e.event == "execution-cancel-requested"]


async def test_a_signed_cancel_url_cancels_without_csrf_once(servers):
    srv = servers()
    execution_id = new_id()
    started(srv, execution_id)
    url = srv.base_url + cancel_url(execution_id)
    async with SSEClient(srv.base_url + stream_url(execution_id)) as client:
        answer = httpx.post(url)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"executionId": execution_id, "eventId": 2}
        again = httpx.post(url)
        assert again.status_code == 202 and again.json()["eventId"] == 2  # the same request
        events = await client.wait_for(lambda got: len(got) >= 2)
    assert names(events) == ["execution-start", "execution-cancel-requested"]
    request = events[1].json
    assert request["by"] == "link" and "requester" not in request  # nobody logged in
    assert request["executionId"] == execution_id and isinstance(request["at"], int)
    assert answer.headers["cache-control"].startswith("max-age=0")


async def test_tokens_keep_to_their_purpose(servers):
    srv = servers()
    execution_id, other = new_id(), new_id()
    started(srv, execution_id)
    stream_token = stream_url(execution_id).split("?", 1)[1]
    cancel_path = cancel_url(execution_id).split("?", 1)[0]
    refused = httpx.post(srv.base_url + cancel_path + "?" + stream_token)
    assert refused.status_code == 403 and refused.json() == {"error": "invalid token"}
    cancel_token = cancel_url(execution_id).split("?", 1)[1]
    stream_path = stream_url(execution_id).split("?", 1)[0]
    assert httpx.get(srv.base_url + stream_path + "?" + cancel_token).status_code == 403
    elsewhere = httpx.post(srv.base_url + cancel_url(other).split("?")[0] + "?" + cancel_token)
    assert elsewhere.status_code == 403
    assert httpx.get(srv.base_url + cancel_url(execution_id)).status_code == 405
    assert httpx.post(srv.base_url + "/sse/executions/-bad-/cancel").status_code == 404
    assert await requests_in_log(srv, execution_id) == []


async def test_an_ended_execution_answers_409(servers):
    srv = servers()
    execution_id = new_id()
    started(srv, execution_id)
    srv.close(execution_id)
    ended = httpx.post(srv.base_url + cancel_url(execution_id))
    assert ended.status_code == 409 and "ended" in ended.json()["error"]


async def test_a_url_bound_to_a_user_cancels_only_in_that_users_session(servers):
    srv = servers()
    execution_id = new_id()
    started(srv, execution_id)
    owner = login(srv, f"o-{uuid.uuid4().hex[:8]}")
    pk = httpx.post(srv.base_url + "/control/login", json={"username": "x"}).json()["pk"]
    mine = login(srv, "x")
    url = srv.base_url + cancel_url(execution_id, user=pk)
    assert httpx.post(url).status_code == 403  # anonymous
    assert httpx.post(url, cookies=owner).json() == {"error": "token is for another user"}
    answer = httpx.post(url, cookies=mine)
    assert answer.status_code == 202
    [request] = await requests_in_log(srv, execution_id)
    assert request.json["by"] == "user" and request.json["requester"] == requester_id(pk)


async def test_a_session_authorised_cancel_needs_the_csrf_token(servers):
    srv = servers(AUTHORIZE_CANCEL="django_sse_exec.auth.staff_only")
    execution_id = new_id()
    started(srv, execution_id)
    session = login(srv, f"s-{uuid.uuid4().hex[:8]}")
    path = srv.base_url + f"/sse/executions/{execution_id}/cancel"
    with httpx.Client(cookies=session) as browser:
        page = browser.get(srv.base_url + "/htmx/")  # any page with a form sets the cookie
        csrf = page.cookies["csrftoken"]
        forged = browser.post(path)  # what a cross-site form sends: the cookies only
        assert forged.status_code == 403 and "CSRF" in forged.text
        not_staff = browser.post(path, headers={"X-CSRFToken": csrf})
        assert not_staff.status_code == 403 and not_staff.json() == {"error": "staff only"}
    staff_name = f"staff-{uuid.uuid4().hex[:8]}"
    staff = httpx.post(srv.base_url + "/control/login", json={"username": staff_name,
                                                               "staff": True})
    with httpx.Client(cookies={"sessionid": staff.cookies["sessionid"]}) as browser:
        csrf = browser.get(srv.base_url + "/htmx/").cookies["csrftoken"]
        assert browser.post(path).status_code == 403
        answer = browser.post(path, headers={"X-CSRFToken": csrf})
        assert answer.status_code == 202, answer.text
        # The signed URL is no proof under this policy: only the session is.
        assert httpx.post(srv.base_url + cancel_url(execution_id)).status_code == 403
    [request] = await requests_in_log(srv, execution_id)
    assert request.json["by"] == "staff" and request.json["requester"] == requester_id(
        staff.json()["pk"])


async def test_htmx_gets_204_and_a_plain_form_goes_back(servers):
    srv = servers()
    first, second = new_id(), new_id()
    for execution_id in (first, second):
        started(srv, execution_id)
    htmx = httpx.post(srv.base_url + cancel_url(first), headers={"HX-Request": "true"})
    assert htmx.status_code == 204 and htmx.content == b""
    page = srv.base_url + "/htmx/?execution=" + second
    form = httpx.post(srv.base_url + cancel_url(second),
                      headers={"Accept": "text/html", "Referer": page})
    assert form.status_code == 303 and form.headers["location"] == page
    away = httpx.post(srv.base_url + cancel_url(second), headers={
        "Accept": "text/html", "Referer": "https://elsewhere.example/"})
    assert away.status_code == 202  # never redirected off the site
