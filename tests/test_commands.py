"""The management commands as a user runs them: real ``manage.py`` processes, Redis, daphne.

``sse_send`` and ``sse_status`` talk to the Redis store from their own process;
``sse_tail`` follows an execution in-process (the app's stream logic over the
Redis layer) or over HTTP from a real daphne (``--url``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import pytest
from django.test import override_settings

from tests.helpers import wait_until_sync
from tests.server import ROOT, Server


@dataclass
class RedisSetup:
    """Environment that puts a process (server, command, worker) on Redis under a unique prefix."""

    url: str
    prefix: str

    @property
    def env(self) -> dict[str, str]:
        return {"TEST_LAYER": "redis", "REDIS_URL": self.url, "TEST_KEY_PREFIX": self.prefix}

    def settings(self) -> override_settings:
        """This process's helpers on the same Redis layer and store as those processes."""
        layers = {"default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": self.url, "socket_timeout": 30}],
                       "prefix": f"asgi_{self.prefix}"},
        }}
        return override_settings(CHANNEL_LAYERS=layers, SSE_EXEC={"KEY_PREFIX": self.prefix})


@pytest.fixture
def redis_setup(requires_redis: str) -> RedisSetup:
    return RedisSetup(requires_redis, f"t6-{uuid.uuid4().hex[:10]}")


def manage_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args, "--settings", "tests.settings"]


def manage(*args: str, env: dict[str, str] | None = None, input: str | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py <args>`` to completion and return its output."""
    import os

    return subprocess.run(manage_command(*args), cwd=ROOT, env={**os.environ, **(env or {})},
                          input=input, capture_output=True, text=True, timeout=timeout)


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``manage.py <args>`` in the background (e.g. a ``sse_tail``)."""
    import os

    return subprocess.Popen(manage_command(*args), cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"process did not exit; stdout={out!r} stderr={err!r}") from None
    return proc.returncode, out, err


@pytest.fixture
def redis_server(make_server, redis_setup) -> Server:
    return make_server("daphne", env=redis_setup.env)


def test_send_tail_and_status_across_processes(redis_server, redis_setup, execution_id):
    env = redis_setup.env
    local = spawn("sse_tail", execution_id, "--timeout", "90", env=env)
    remote = spawn("sse_tail", execution_id, "--url", redis_server.base_url, "--timeout", "90",
                   env=env)
    try:
        wait_until_sync(lambda: redis_server.count(execution_id) == 2, 60, "both tails to connect")
        sent = manage("sse_send", execution_id, "task-start", '{"taskId":"a","title":"héllo"}',
                      env=env)
        assert (sent.returncode, sent.stdout) == (0, "1 task-start\n"), sent.stderr
        assert manage("sse_send", execution_id, "step", "-", input="[1, 2]", env=env).stdout == "2 step\n"

        status = manage("sse_status", execution_id, env=env)
        assert status.returncode == 0, status.stderr
        assert status.stdout.split("\n")[:5] == [
            f"execution  {execution_id}", "clients    2", "last id    2", "closed     no",
            "history    2 events (ids 1-2)"]

        closed = manage("sse_send", execution_id, "done", '{"ok":true}', "--close", env=env)
        assert closed.stdout == "3 done\n4 stream-closed\n", closed.stderr
    finally:
        results = [finish(local), finish(remote)]
    expected = [
        '1 task-start {"taskId":"a","title":"héllo"}',
        "2 step [1,2]",
        '3 done {"ok":true}',
        f'4 stream-closed {{"executionId":"{execution_id}","lastEventId":4}}',
    ]
    for code, out, err in results:
        assert code == 0, err
        assert out.splitlines() == expected

    wait_until_sync(lambda: json.loads(manage("sse_status", execution_id, "--json", env=env).stdout)
               ["clients"] == 0, 60, "streams to be uncounted")
    status = json.loads(manage("sse_status", execution_id, "--json", env=env).stdout)
    assert status == {"executionId": execution_id, "clients": 0, "lastEventId": 4, "closed": True,
                      "history": 4, "firstRetainedId": 1}


def test_tail_of_a_closed_execution_replays_and_exits(redis_server, redis_setup, execution_id):
    env = redis_setup.env
    redis_server.send(execution_id, ("a", 1), ("b", {"long": "x" * 50}))
    redis_server.close(execution_id)

    code, out, err = finish(spawn("sse_tail", execution_id, "--width", "12", env=env))
    assert code == 0, err
    assert out.splitlines() == ["1 a 1", '2 b {"long":"xx…', '3 stream-closed {"execution…']

    code, out, err = finish(spawn("sse_tail", execution_id, "--after", "1", "--json", env=env))
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": "2", "event": "b", "data": {"long": "x" * 50}},
        {"id": "3", "event": "stream-closed", "data": {"executionId": execution_id, "lastEventId": 3}},
    ]

    for extra in ([], ["--url", redis_server.base_url]):
        code, out, err = finish(spawn("sse_tail", execution_id, "--after", "3", *extra, env=env))
        assert (code, out) == (0, "") and "is closed; nothing after id 3" in err


def test_tail_times_out_on_an_open_execution(redis_server, redis_setup, execution_id):
    redis_server.send(execution_id, ("a", 1))
    for extra in ([], ["--url", redis_server.base_url]):
        started = time.monotonic()
        code, out, err = finish(spawn("sse_tail", execution_id, "--timeout", "3", *extra,
                                      env=redis_setup.env))
        assert code == 1 and out == "1 a 1\n"
        assert "was not closed within 3 s" in err
        assert time.monotonic() - started < 45


def test_tail_url_resumes_after_the_server_restarts(make_server, redis_setup, execution_id):
    first = make_server("daphne", env=redis_setup.env)
    tail = spawn("sse_tail", execution_id, "--url", first.base_url, "--timeout", "90",
                 env=redis_setup.env)
    try:
        wait_until_sync(lambda: first.count(execution_id) == 1, 60, "the tail to connect")
        first.send(execution_id, ("before", 1))
        first.stop()
        second = make_server("daphne", env=redis_setup.env, port=first.port)
        # (A stale entry of the stopped server may count too: the tail replays what it missed.)
        wait_until_sync(lambda: second.count(execution_id) >= 1, 60, "the tail to reconnect")
        second.send(execution_id, ("after", 2))
        second.close(execution_id)
    finally:
        code, out, err = finish(tail)
    assert code == 0, err
    assert out.splitlines() == [  # nothing lost or repeated across the reconnect
        "1 before 1", "2 after 2",
        f'3 stream-closed {{"executionId":"{execution_id}","lastEventId":3}}']


def test_bad_input_is_a_clear_error(redis_setup, execution_id):
    env = redis_setup.env
    cases = [
        (("sse_send", execution_id, "ev", "{bad"), 1, "data is not valid JSON"),
        (("sse_send", execution_id, "stream-x", "1"), 1, "reserved"),
        (("sse_send", execution_id, "bad name", "1"), 1, "invalid event name"),
        (("sse_send", execution_id), 1, "give an event name, or --close"),
        (("sse_send", "no/such", "ev"), 2, "invalid execution_id"),
        (("sse_tail", execution_id, "--after", "-1"), 1, "non-negative"),
    ]
    for args, code, message in cases:
        result = manage(*args, env=env)
        assert result.returncode == code and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert manage("sse_send", execution_id, "--close", env=env).stdout == "1 stream-closed\n"
    again = manage("sse_send", execution_id, "ev", "1", env=env)
    assert again.returncode == 1 and "closed" in again.stderr
    assert manage("sse_status", execution_id, "--json", env=env).stdout.count('"lastEventId": 1') == 1


def test_commands_refuse_a_per_process_store(execution_id):
    env = {"TEST_LAYER": "memory"}
    for args in (("sse_status", execution_id), ("sse_tail", execution_id)):
        result = manage(*args, env=env)
        assert result.returncode == 1 and "in-memory store lives inside each process" in result.stderr
    sent = manage("sse_send", execution_id, "ev", "1", env=env)
    assert sent.returncode == 0 and "warning: the in-memory store" in sent.stderr


def test_unreachable_redis_is_a_clear_error(execution_id):
    from tests.server import free_port

    env = {"TEST_LAYER": "redis", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    for args in (("sse_status", execution_id), ("sse_send", execution_id, "ev", "1")):
        result = manage(*args, env=env)
        assert result.returncode == 1 and "is unavailable" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_tail_url_unreachable(execution_id):
    from tests.server import free_port

    result = manage("sse_tail", execution_id, "--url", f"http://127.0.0.1:{free_port()}",
                    env={"TEST_LAYER": "memory"})
    assert result.returncode == 1 and "cannot reach" in result.stderr


# -- what sse_tail prints is safe for a terminal -----------------------------------------

#: A window title, a screen clear, a C1 CSI, a right-to-left override and an isolate, DEL.
HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202egnp.exe\u2066\x7f"


def test_escape_controls_escapes_exactly_the_unsafe_characters():
    from django_sse_exec.management.terminal import UNSAFE, escape_controls

    assert escape_controls("plain – ünïcode, \\x1b stays") == "plain – ünïcode, \\x1b stays"
    assert escape_controls("a\x1bb\tc\nd\re\x00") == "a\\x1bb\\x09c\\x0ad\\x0de\\x00"
    assert escape_controls("\x7f\x80\x9b\x9f\xa0") == "\\x7f\\x80\\x9b\\x9f\xa0"
    assert escape_controls("\u202a\u202e\u2066\u2069\u200e\u200f\u061c\u2028\u2029") == (
        "\\u202a\\u202e\\u2066\\u2069\\u200e\\u200f\\u061c\\u2028\\u2029")
    assert escape_controls("\x9b\u202e\x7f", json=True) == "\\u009b\\u202e\\u007f"
    text = "".join(chr(c) for c in range(0x3000) if not 0xD800 <= c < 0xE000)
    for escaped in (escape_controls(text), escape_controls(json.dumps(text, ensure_ascii=False), json=True)):
        assert not UNSAFE.search(escaped)
    # A JSON line stays JSON that means the same.
    assert json.loads(escape_controls(json.dumps(text, ensure_ascii=False), json=True)) == text


def assert_printable(out: str) -> None:
    from django_sse_exec.management.terminal import UNSAFE

    for line in out.splitlines():
        assert not UNSAFE.search(line), repr(line)


def test_tail_escapes_event_data(redis_setup, execution_id):
    env = redis_setup.env
    sent = manage("sse_send", execution_id, "evil", json.dumps({"name": HOSTILE}), "--close", env=env)
    assert sent.returncode == 0, sent.stderr
    code, out, err = finish(spawn("sse_tail", execution_id, env=env))
    assert code == 0, err
    assert_printable(out)
    first = out.splitlines()[0]
    # (JSON had escaped the C0 controls already; the C1, DEL and bidi ones are escaped now.)
    assert first == '1 evil {"name":"\\u001b]0;owned\\u0007\\u001b[2J\\x9b31m\\u202egnp.exe\\u2066\\x7f"}'
    code, out, err = finish(spawn("sse_tail", execution_id, "--json", env=env))
    assert code == 0, err
    assert_printable(out)
    assert json.loads(out.splitlines()[0])["data"] == {"name": HOSTILE}  # exactly what was sent


def test_tail_escapes_what_a_remote_server_writes(execution_id):
    """A server that is not ours: controls in its ``id:`` and ``event:`` lines and its data."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.server import free_port

    body = (f"id: 7{HOSTILE}\nevent: x{HOSTILE}\ndata: raw {HOSTILE}\r\n\n"
            "id: 8\nevent: stream-closed\ndata: {}\n\n").encode()

    class Hostile(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if "refuse" in self.path:
                self.send_response(403)
                self.end_headers()
                self.wfile.write(f"no {HOSTILE}".encode())
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        env = {"TEST_LAYER": "memory"}
        result = manage("sse_tail", execution_id, "--url", base, "--timeout", "30", env=env)
        assert result.returncode == 0, result.stderr
        assert_printable(result.stdout)
        assert result.stdout.splitlines()[0] == (
            "7\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202egnp.exe\\u2066\\x7f "
            "x\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202egnp.exe\\u2066\\x7f "
            "raw \\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202egnp.exe\\u2066\\x7f")
        result = manage("sse_tail", execution_id, "--url", base, "--json", "--timeout", "30", env=env)
        assert result.returncode == 0, result.stderr
        assert_printable(result.stdout)
        assert json.loads(result.stdout.splitlines()[0]) == {
            "id": f"7{HOSTILE}", "event": f"x{HOSTILE}", "data": f"raw {HOSTILE}"}
        refused = manage("sse_tail", "refuse", "--url", base, env=env)
        assert refused.returncode == 1 and "HTTP 403 no \\x1b]0;owned" in refused.stderr
        assert_printable(refused.stderr)
    finally:
        server.shutdown()
