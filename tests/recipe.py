"""Build a throwaway project from the documentation's own snippets, and run it.

The docs mark each snippet a user copies with a ``% recipe: NAME`` line (a MyST
comment) before its fenced block; :func:`snippet` reads them from ``docs/``, so
the tests run what the docs say, not a copy of it. Each snippet's first line
names its file (``# mysite/settings.py: add at the end``, ``<!-- myapp/templates/
myapp/progress.html -->``), and :meth:`RecipeProject.apply` writes or appends it
there, as the docs tell the reader to. :class:`RecipeProject` makes a project
with ``django-admin startproject`` and ``startapp myapp``, applies the
quickstart, and adds a few test-only views (to render the page of many
executions and send events inside the server process, since the project runs on
the in-memory layer).
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from pathlib import Path

import httpx

from tests.server import ROOT, VENV_BIN, free_port, stop_process, wait_until_serving

DOCS = ROOT / "docs"
MARK = re.compile(r"^% recipe: ([\w-]+)\n```[\w-]*\n(.*?)\n```", re.S | re.M)


def snippets() -> dict[str, tuple[Path, str]]:
    """Every ``% recipe: NAME`` block of the docs: name -> (page, text)."""
    found: dict[str, tuple[Path, str]] = {}
    for page in sorted(DOCS.rglob("*.md")):
        for match in MARK.finditer(page.read_text()):
            assert match.group(1) not in found, f"recipe {match.group(1)!r} is in two places"
            found[match.group(1)] = (page, match.group(2) + "\n")
    return found


def snippet(name: str) -> str:
    """The fenced block after ``% recipe: NAME`` in the docs."""
    found = snippets()
    assert name in found, f"docs/ has no '% recipe: {name}' snippet"
    return found[name][1]


#: The quickstart, in the order it says to apply it.
QUICKSTART = ("settings", "urls", "views", "page")

#: Test-only views, appended to the project next to the docs' snippets.
HARNESS = '''
from django.http import HttpResponse as _HttpResponse, JsonResponse as _JsonResponse
from django.template import engines as _engines


def recipe_many_page(request):
    """The docs' page of many executions."""
    template = _engines["django"].from_string(MANY_PAGE)
    return _HttpResponse(template.render({{}}, request))


def recipe_many_send(request):
    """The docs' snippet that runs an execution of a feed, as the body of a sync view."""
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
    """A ``startproject`` project in ``directory`` with the quickstart's snippets applied."""

    def __init__(self, directory: Path, bin_dir: Path = VENV_BIN) -> None:
        self.dir = directory
        self.bin = bin_dir  # the virtualenv's (the tests' own, or one the wheel was installed in)
        self.procs: list[subprocess.Popen[bytes]] = []
        directory.mkdir(parents=True, exist_ok=True)
        run([str(bin_dir / "django-admin"), "startproject", "mysite", str(directory)],
            env=self.env)
        self.manage("startapp", "myapp")
        for name in QUICKSTART:
            self.apply(name)
        many_send = textwrap.indent(snippet("many-send"), "    ")
        (directory / "mysite" / "recipe_views.py").write_text(
            f"MANY_PAGE = {snippet('many-page')!r}\n" + HARNESS.format(many_send=many_send))
        with open(directory / "mysite" / "urls.py", "a") as f:
            f.write("\nfrom mysite import recipe_views\n"
                    "urlpatterns += [path('recipe/many', recipe_views.recipe_many_page),\n"
                    "                path('recipe/many-send', recipe_views.recipe_many_send),\n"
                    "                path('recipe/emit', recipe_views.recipe_emit)]\n")

    def apply(self, name: str, text: str | None = None) -> Path:
        """Write the snippet where its first line says (appending on "add at the end")."""
        text = snippet(name) if text is None else text
        first = text.split("\n", 1)[0]
        where = re.fullmatch(r"(?:# |<!-- )([\w./]+)(:? add at the end)?(?: -->)?", first)
        assert where, f"recipe {name!r} does not start by naming its file: {first!r}"
        path = self.dir / where.group(1)
        path.parent.mkdir(parents=True, exist_ok=True)
        if where.group(2):
            with open(path, "a") as f:
                f.write("\n" + text)
        else:  # a new file, or one startproject/startapp made with nothing of the reader's
            path.write_text(text)
        return path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DJANGO_", "SSE_EXEC", "TEST_"))}
        return {**env, "PYTHONUNBUFFERED": "1"}

    def append_settings(self, text: str) -> None:
        """Settings of the test itself (not the docs'), e.g. a short keepalive."""
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


async def started_page(http: httpx.AsyncClient, path: str, prefix: str) -> httpx.Response:
    """GET ``path`` (a view that starts work and redirects to its page under ``prefix``),
    then that page."""
    started = await http.get(path)
    assert started.status_code == 302 and started.headers["location"].startswith(prefix), started.text
    page = await http.get(started.headers["location"])
    assert page.status_code == 200, page.text
    return page


def run(command: list[str], **kwargs: object) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr
