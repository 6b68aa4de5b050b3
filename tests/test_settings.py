"""Every ``SSE_EXEC`` value is type- and range-checked, by a system check and at first use.

``"KEEPALIVE": "15s"`` used to pass ``manage.py check`` and then end every stream
(``float("15s")`` inside the live loop). Now the check names the key, the value
and the expected form, and the settings object refuses to hand out any value
while one is invalid: a server started anyway answers streams with a refusal
and logs the same message, and no stream runs with the bad value.
"""

from __future__ import annotations

import subprocess

import httpx
import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_sse_exec import conf
from django_sse_exec.conf import CHECK_ID, DEFAULTS, SETTINGS, check_values, sse_settings
from tests.server import ROOT, VENV_BIN, Server

BAD = 'SSE_EXEC["KEEPALIVE"] = \'15s\': expected a number of seconds > 0'


def e016(sse_exec: dict) -> list[str]:
    with override_settings(SSE_EXEC=sse_exec):
        return [m.msg for m in run_checks() if m.id == CHECK_ID]


def test_keepalive_with_a_unit_fails_the_check_with_key_value_and_form():
    assert e016({"KEEPALIVE": "15s"}) == [BAD]
    assert e016({"KEEPALIVE": 15}) == []


@pytest.mark.parametrize("key, value", [
    ("KEEPALIVE", 0), ("KEEPALIVE", float("nan")), ("KEEPALIVE", True), ("RETRY_MS", 2.5),
    ("RETRY_MS", -1), ("HISTORY_MAX_EVENTS", 0), ("CLOSED_TTL", "1h"), ("STORE", 42),
    ("STORE", "not a path"), ("REDIS_URL", "127.0.0.1:6379"), ("MAX_STREAM_LIFETIME", 0),
    ("MAX_STREAM_LIFETIME_JITTER", 1), ("MAX_STREAMS_PER_USER", 0), ("SHUTDOWN_GRACE", -1),
    ("CHANNEL_LAYER", None), ("FOLLOW_TASKS", "myapp.tasks."), ("FOLLOW_TASKS", ["myapp.", 3]),
    ("FOLLOW_TASKS", [""]), ("FOLLOW_TASKS", None), ("FOLLOW_TASKS", 1),
])
def test_each_kind_of_bad_value_is_reported(key, value):
    [message] = e016({key: value})
    assert message.startswith(f'SSE_EXEC["{key}"] = {value!r}: expected ')


@pytest.mark.parametrize("key, value", [
    ("MAX_STREAM_LIFETIME", None), ("MAX_STREAM_LIFETIME", 2.0), ("SHUTDOWN_GRACE", 0),
    ("STORE", "redis"), ("STORE", "myapp.stores.Custom"), ("REDIS_URL", "rediss://r:6380/1"),
    ("AUTHORIZE", lambda request, execution_id: True), ("MAX_STREAM_LIFETIME_JITTER", 0),
    ("FOLLOW_TASKS", True), ("FOLLOW_TASKS", False), ("FOLLOW_TASKS", ["myapp.tasks."]),
    ("FOLLOW_TASKS", ("a.", "b.")), ("FOLLOW_TASKS", []),
])
def test_good_values_pass(key, value):
    assert e016({key: value}) == []


def test_sse_exec_that_is_not_a_dict_is_reported_and_refused():
    assert e016(["KEEPALIVE", 15]) == ["SSE_EXEC = ['KEEPALIVE', 15]: expected a dict"]
    with override_settings(SSE_EXEC=["KEEPALIVE", 15]):
        with pytest.raises(ImproperlyConfigured, match="expected a dict"):
            sse_settings.KEEPALIVE  # noqa: B018


def test_keys_with_a_dedicated_check_are_reported_once_under_its_id():
    with override_settings(SSE_EXEC={"TOKEN_MAX_AGE": "1h", "MULTI_STREAM_MAX": 0}):
        ids = [m.id for m in run_checks() if m.id.startswith("django_sse_exec.")]
    assert sorted(ids) == ["django_sse_exec.E004", "django_sse_exec.E012"]
    assert all(item.accepts(item.default) for item in SETTINGS.values())


def test_the_settings_object_refuses_every_read_while_a_value_is_invalid():
    assert sse_settings.KEEPALIVE == DEFAULTS["KEEPALIVE"]
    with override_settings(SSE_EXEC={"KEEPALIVE": "15s", "RETRY_MS": 100}):
        for name in ("KEEPALIVE", "RETRY_MS", "AUTHORIZE"):
            with pytest.raises(ImproperlyConfigured, match=r"KEEPALIVE.*'15s'.*seconds > 0.*E016"):
                getattr(sse_settings, name)
        assert check_values()  # the checks still read the given values
    with override_settings(SSE_EXEC={"KEEPALIVE": 3, "RETRY_MS": 100}):
        assert (sse_settings.KEEPALIVE, sse_settings.RETRY_MS) == (3, 100)
    assert sse_settings.KEEPALIVE == DEFAULTS["KEEPALIVE"]
    with pytest.raises(AttributeError):
        sse_settings.NO_SUCH_SETTING  # noqa: B018


def test_values_are_validated_once_per_change_not_per_read(monkeypatch):
    calls = []
    validate = conf.GivenSettings.problems
    monkeypatch.setattr(conf.GivenSettings, "problems", lambda self: calls.append(1) or validate(self))
    with override_settings(SSE_EXEC={"KEEPALIVE": 7}):
        assert all(sse_settings.KEEPALIVE == 7 for _ in range(1000))
        assert sse_settings.__dict__["KEEPALIVE"] == 7  # a plain attribute from now on
    assert len(calls) == 1
    assert sse_settings.KEEPALIVE == DEFAULTS["KEEPALIVE"] and len(calls) == 2


def test_manage_py_check_fails_and_a_stream_never_runs_with_the_bad_value(tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "SSE_EXEC_JSON": '{"KEEPALIVE": "15s"}'}
    check = subprocess.run([str(VENV_BIN / "python"), "manage.py", "check"], cwd=ROOT,
                           env={**Server().env, **env}, capture_output=True, text=True, timeout=120)
    assert check.returncode != 0 and f"{CHECK_ID}) {BAD}" in check.stderr, check.stderr
    from django_sse_exec import stream_url

    with Server("daphne", sse_exec={"KEEPALIVE": "15s"}) as srv:
        url = srv.base_url + stream_url("exec-bad-setting")
        with httpx.stream("GET", url, timeout=10) as response:
            body = response.read()
        # Refused at the connect (EventSource does not retry a 403), before any event.
        assert response.status_code == 403 and b"data:" not in body
        srv.stop()
        assert f"ImproperlyConfigured: {BAD}" in srv.log()
