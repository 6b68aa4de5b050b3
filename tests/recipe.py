"""Build a throwaway project from the README's own snippets, and run it.

The README marks each snippet a new user copies with ``<!-- recipe:NAME -->``
before its fenced block; :func:`snippet` reads them from README.md, so the
tests run what the README says, not a copy of it. :class:`RecipeProject` makes
a project with ``django-admin startproject``, applies the settings, URL, send
and page snippets as the README says to, and adds a few test-only views (to
render the page, send events and close executions inside the server process,
since the project runs on the in-memory layer).
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from pathlib import Path

from tests.server import ROOT, VENV_BIN, free_port, stop_process, wait_until_serving

README = ROOT / "README.md"


def snippet(name: str) -> str:
    """The fenced block after ``<!-- recipe:NAME -->`` in README.md."""
    text = README.read_text()
    found = re.search(rf"<!-- recipe:{re.escape(name)} -->\s*\n```[\w-]*\n(.*?)\n```", text, re.S)
    assert found, f"README.md has no <!-- recipe:{name} --> snippet"
    return found.group(1) + "\n"


#: Test-only views, appended to the project next to the README's snippets.
HARNESS = '''
import json as _json

from django.http import HttpResponse as _HttpResponse, JsonResponse as _JsonResponse
from django.template import engines as _engines


def recipe_page(request):
    """The README's page snippet, rendered for ?execution=<id>."""
    template = _engines["django"].from_string(PAGE)
    return _HttpResponse(template.render({{"execution_id": request.GET["execution"]}}, request))


def recipe_send(request):
    """The README's send snippet, run as the body of a sync view."""
{send}
    return _HttpResponse("sent")


def recipe_many_page(request):
    """The README's page of many executions."""
    template = _engines["django"].from_string(MANY_PAGE)
    return _HttpResponse(template.render({{}}, request))


def recipe_many_send(request):
    """The README's snippet that runs an execution of a feed, as the body of a sync view."""
{many_send}
    return _HttpResponse("sent")


def recipe_emit(request):
    """Send one event to ?execution=<id> (named ?event=) and return its id."""
    from django_sse_exec import send_sse_event

    event_id = send_sse_event(request.GET["execution"], request.GET.get("event", "step"),
                              {{"n": request.GET.get("n")}})
    return _JsonResponse({{"id": event_id}})
'''


class RecipeProject:
    """A ``startproject`` project in ``directory`` with the README's snippets applied."""

    def __init__(self, directory: Path, bin_dir: Path = VENV_BIN) -> None:
        self.dir = directory
        self.bin = bin_dir  # the virtualenv's (the tests' own, or one the wheel was installed in)
        self.procs: list[subprocess.Popen[bytes]] = []
        directory.mkdir(parents=True, exist_ok=True)
        run([str(bin_dir / "django-admin"), "startproject", "mysite", str(directory)],
            env=self.env)
        package = directory / "mysite"
        with open(package / "settings.py", "a") as f:
            f.write("\n" + snippet("settings"))
        with open(package / "urls.py", "a") as f:
            f.write("\n" + snippet("urls"))
        send = textwrap.indent(snippet("send"), "    ")
        many_send = textwrap.indent(snippet("many-send"), "    ")
        (package / "recipe_views.py").write_text(
            f"PAGE = {snippet('page')!r}\nMANY_PAGE = {snippet('many-page')!r}\n"
            + HARNESS.format(send=send, many_send=many_send))
        with open(package / "urls.py", "a") as f:
            f.write("\nfrom mysite import recipe_views\n"
                    "urlpatterns += [path('recipe/page', recipe_views.recipe_page),\n"
                    "                path('recipe/send', recipe_views.recipe_send),\n"
                    "                path('recipe/many', recipe_views.recipe_many_page),\n"
                    "                path('recipe/many-send', recipe_views.recipe_many_send),\n"
                    "                path('recipe/emit', recipe_views.recipe_emit)]\n")

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DJANGO_", "SSE_EXEC", "TEST_"))}
        return {**env, "PYTHONUNBUFFERED": "1"}

    def append_settings(self, text: str) -> None:
        """Settings of the test itself (not the README's), e.g. a short keepalive."""
        with open(self.dir / "mysite" / "settings.py", "a") as f:
            f.write("\n" + text + "\n")

    def manage(self, *args: str) -> str:
        return run([str(self.bin / "python"), "manage.py", *args], cwd=self.dir, env=self.env)

    def start(self, command: list[str], name: str) -> Path:
        """Run ``command`` in the project until :meth:`stop`; return its log's path."""
        log_path = self.dir / f"{name}-{len(self.procs)}.log"
        with open(log_path, "wb") as log:
            self.procs.append(subprocess.Popen(command, cwd=self.dir, env=self.env,
                                               stdout=log, stderr=subprocess.STDOUT))
        return log_path

    def daphne(self) -> str:
        """Start ``daphne mysite.asgi:application``; return its base URL once it answers."""
        port = free_port()
        log = self.start([str(self.bin / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                          "mysite.asgi:application"], "daphne")
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(self.procs[-1], base + "/recipe/emit?execution=warm-up", 60,
                           lambda: log.read_text()[-3000:])
        return base

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc, timeout=15)
        self.procs.clear()


def run(command: list[str], **kwargs: object) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr
