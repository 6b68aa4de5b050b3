"""Streams refuse WSGI loudly: a system check error, and an immediate plain-text error.

Through a real gunicorn (sync worker): a stream request answers at once with a
500 naming the fix (and a log line), instead of buffering the stream until the
execution ends while blocking the worker.
"""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest
from django.core.checks import run_checks

from tests.helpers import wait_until_sync
from tests.server import ROOT, VENV_BIN, free_port, wait_until_serving


def test_check_error_without_asgi_application(settings):
    settings.ASGI_APPLICATION = None
    errors = [m for m in run_checks() if m.id == "django_sse_exec.E010"]
    assert len(errors) == 1
    assert 'ASGI_APPLICATION = "<project>.asgi.application"' in errors[0].hint
    assert "daphne" in errors[0].hint
    settings.ASGI_APPLICATION = "example_project.asgi.application"
    assert "django_sse_exec.E010" not in [m.id for m in run_checks()]


@pytest.fixture
def gunicorn(tmp_path):
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "--workers", "1", "--timeout", "30",
             "--bind", f"127.0.0.1:{port}", "tests.wsgi:application"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"})
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(proc, base + "/control/hub", 60, log_path.read_text)
    yield base, log_path
    proc.terminate()
    proc.wait(20)


def test_stream_through_wsgi_is_refused_at_once(gunicorn, execution_id):
    from django_sse_exec import stream_url

    base, log_path = gunicorn
    for _ in range(3):  # one sync worker: a buffered stream would block the next request
        started = time.monotonic()
        resp = httpx.get(base + stream_url(execution_id), timeout=20)
        assert time.monotonic() - started < 10
        assert resp.status_code == 500
        assert resp.headers["content-type"] == "text/plain; charset=utf-8"
        assert "need an ASGI server" in resp.text
        assert 'ASGI_APPLICATION = "<project>.asgi.application"' in resp.text
    assert httpx.get(base + "/control/hub", timeout=10).status_code == 200
    wait_until_sync(lambda: "served through WSGI: streams need an ASGI server"
                    in log_path.read_text(), 10, "the log line", interval=0.1)
