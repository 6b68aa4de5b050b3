"""The examples of "Progress people can plan by" (docs/howto/progress.md) do what the page
says, run as written in this process (memory store): rate and time left appear once they
mean something, steps roll up to the percentages in the comments, the stall setting is
valid, the widget with ``cancel=True`` posts to a cancel URL that works, ``check_cancel``
stops the loop, and a repeated key sends nothing."""

from __future__ import annotations

import json
import re
import uuid
from html import unescape
from types import SimpleNamespace

import pytest
from django.template import engines

import django_sse_exec as sse
from django_sse_exec.auth.cancel import SALT, cancel_token
from django_sse_exec.conf import problem
from django_sse_exec.execution.snapshot import read_all
from django_sse_exec.runtime.sync import run_sync
from django_sse_exec.store import get_store
from tests.recipe import snippet


@pytest.fixture
def execution_id() -> str:
    return f"docs-progress-{uuid.uuid4().hex[:8]}"


def run(name: str, execution_id: str, **replace: str) -> None:
    code = snippet(name).replace('"exec-42"', repr(execution_id))
    for old, new in replace.items():
        assert old in code, old
        code = code.replace(old, new)
    exec(code, {})  # noqa: S102


def logged(execution_id: str) -> list[tuple[str, dict]]:
    log = run_sync("read", read_all, get_store(), execution_id)
    return [(e.event, json.loads(e.data)) for e in log.events if e.event != "stream-closed"]


def test_rate_and_eta_appear_once_they_mean_something(execution_id):
    run("progress-rate", execution_id)
    progress = [data for event, data in logged(execution_id) if event == "progress"]
    assert len(progress) == 20 and [p["percent"] for p in progress][:2] == [5.0, 10.0]
    assert "rate" not in progress[1] and "eta" not in progress[1]
    assert "rate" in progress[-2] and 5 <= progress[-2]["rate"] <= 11  # rows of 0.1 s
    assert 0 < progress[-2]["eta"] <= 2 and progress[-1]["eta"] == 0


def test_steps_roll_up_as_the_comments_say(execution_id):
    run("progress-steps", execution_id)
    progress = [data for event, data in logged(execution_id) if event == "progress"]
    percents = [p["percent"] for p in progress]
    assert percents[:3] == [0.0, 7.5, 15.0] and 75.0 in percents and percents[-1] == 100.0
    read = [p for p in progress if p.get("step") == ["parse", "read"] and "stepDone" not in p]
    assert [p["percent"] for p in read] == [75.0, 81.2]
    assert sse.get_execution_state(execution_id).summary["status"] == "success"


def test_the_stall_setting_is_valid():
    namespace: dict = {}
    exec(snippet("progress-stall"), namespace)  # noqa: S102
    assert namespace["SSE_EXEC"] == {"STALL_AFTER": 60}
    assert all(problem(key, value) is None for key, value in namespace["SSE_EXEC"].items())


def test_the_cancellable_widget_posts_to_a_cancel_url_that_works(execution_id, rf):
    sse.send_sse_event(execution_id, "execution-start", {"executionId": execution_id,
                                                         "totalTasks": 1, "startTime": 0})
    request = rf.get("/")
    request.user = SimpleNamespace(pk=7, is_anonymous=False, is_authenticated=True)
    html = engines["django"].from_string(snippet("progress-cancel-page")).render(
        {"execution_id": execution_id}, request)
    action = unescape(re.search(r'class="sse-exec__cancel" method="post" action="([^"]+)"',
                                html).group(1))
    assert action.startswith(f"/sse/executions/{execution_id}/cancel?token=")
    post = rf.post(action)
    post.user = request.user
    assert run_sync("authorize", cancel_token, post, execution_id) is True
    assert SALT == "django_sse_exec.cancel"


def test_check_cancel_stops_the_loop(execution_id):
    with pytest.raises(sse.ExecutionCancelled):
        run("progress-cancel-check", execution_id, **{
            '"""Stands for a long call that reports nothing."""':
                f'if chunk == 2: __import__("django_sse_exec").request_cancel({execution_id!r})'})
    events = [event for event, _ in logged(execution_id)]
    assert events == ["execution-start", "execution-cancel-requested", "execution-cancelled"]


def test_a_repeated_key_sends_nothing(execution_id):
    run("progress-keys", execution_id)
    assert [event for event, _ in logged(execution_id)] == ["file-uploaded"]
