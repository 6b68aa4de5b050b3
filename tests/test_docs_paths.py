"""Every name the documentation and the docstrings point at exists, after any move.

* Every dotted path of the package the docs name — in code (``from x import y``,
  ``"django_sse_exec.auth.signed_token"``), in text, in an autodoc directive — is
  imported and resolved: what users copy works. Names that look like paths and are
  not (check ids, permissions, a signing salt) are listed with what they are.
* Every file of the repository the docs or the docstrings name by its path
  (``django_sse_exec/sending/delivery.py``, ``streams/live.py``,
  ``tests/test_tasks.py``) exists.
* Every cross-reference in the package's docstrings and comments (``:mod:``,
  ``:func:``, ``:class:``, ``:meth:``, ``:data:``, ``:attr:``, ``:exc:``) names an
  object that exists: relative ones (``.fanout``) from the module they are in
  and its packages up, bare ones also as a method of a class of that module or
  as the last part of any module's name (as Sphinx looks them up).

CHANGELOG.md is left out: it names the paths things moved from.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from bench.imports import module_names
from tests.recipe import DOCS
from tests.server import ROOT

PACKAGE = ROOT / "django_sse_exec"
TEXTS = [p for p in sorted(DOCS.rglob("*.md")) if "_build" not in p.parts and "_inventories" not in p.parts]
TEXTS += [ROOT / "README.md", ROOT / "SECURITY.md"]

#: Dotted names in the docs that are not import paths.
NOT_PATHS = {
    "django_sse_exec.stream": "the salt of stream tokens (signing)",
    "django_sse_exec.view_executions": "a permission",
    "django_sse_exec.close_executions": "a permission",
}
CHECK_ID = re.compile(r"django_sse_exec\.[EW]\d{3}")
DOTTED = re.compile(r"\bdjango_sse_exec(?:\.\w+)+")
FROM_IMPORT = re.compile(r"^\s*from (django_sse_exec[\w.]*) import \(?([\w, ]+)", re.M)
AUTODOC = re.compile(r"^\.\. (?:auto\w+|module):: ([\w.]+)", re.M)
ROLE = re.compile(r":(?:mod|func|class|meth|data|attr|exc|obj):`([^`]+)`")
#: A repository file named by its path: a top directory of the repository or of the package.
FILE = re.compile(r"(?<![\w/.])((?:[\w-]+/)+[\w-]+\.py)\b")
TOP = {"django_sse_exec", "tests", "bench", "docs", "example_project"}


def resolve(path: str) -> Any:
    """The object at ``path``: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name)
        return found
    raise ImportError(path)


def exists(path: str) -> bool:
    try:
        resolve(path)
    except (ImportError, AttributeError):
        return False
    return True


def named_paths(text: str) -> set[str]:
    """Dotted paths of the package a page names: in text, imports and autodoc directives."""
    found = {path.rstrip(".") for path in DOTTED.findall(text)}
    for module, names in FROM_IMPORT.findall(text):
        found |= {f"{module}.{name.strip()}" for name in names.split(",") if name.strip()}
    module = "django_sse_exec"
    for line in text.splitlines():
        directive = AUTODOC.match(line)
        if directive is None:
            continue
        target = directive.group(1)
        if line.startswith(".. module::"):
            module = target
        else:
            found.add(target if target.startswith("django_sse_exec") else f"{module}.{target}")
    return {path for path in found if path not in NOT_PATHS and not CHECK_ID.fullmatch(path)}


@pytest.mark.parametrize("page", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dotted_path_the_docs_name_imports(page):
    missing = sorted(path for path in named_paths(page.read_text()) if not exists(path))
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not import: {missing}"


def test_the_api_reference_documents_what_the_other_pages_tell_users_to_import():
    reference = named_paths((DOCS / "reference" / "api.md").read_text())
    told = set()
    for page in TEXTS:
        told |= {f"{m}.{n.strip()}" for m, names in FROM_IMPORT.findall(page.read_text())
                 for n in names.split(",") if n.strip()}
    internal = {"django_sse_exec.conf.SETTINGS"}  # the docs' own extension reads it
    undocumented = sorted(told - reference - internal)
    assert not undocumented, f"imported in the docs, not in the API reference: {undocumented}"


def test_a_stale_path_is_caught():
    assert named_paths("`django_sse_exec.metrics.metrics_view`, salt `django_sse_exec.stream`, "
                       "`django_sse_exec.W004`\n\n.. module:: django_sse_exec\n.. autofunction:: gone\n") == {
        "django_sse_exec.metrics.metrics_view", "django_sse_exec.gone"}
    assert not exists("django_sse_exec.metrics.metrics_view") and not exists("django_sse_exec.gone")
    assert exists("django_sse_exec.telemetry.metrics.metrics_view") and exists("django_sse_exec.auth.allow_any")


def file_paths(text: str) -> set[str]:
    """Repository files a text names by a path under one of its top directories."""
    found = set()
    for path in FILE.findall(text):
        top = path.split("/", 1)[0]
        if top in TOP:
            found.add(path)
        elif (PACKAGE / top).is_dir():
            found.add(f"django_sse_exec/{path}")
    return found


@pytest.mark.parametrize("text", [*TEXTS, *sorted(PACKAGE.rglob("*.py"))], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_named_by_its_path_exists(text):
    missing = sorted(path for path in file_paths(text.read_text()) if not (ROOT / path).exists())
    assert not missing, f"{text.relative_to(ROOT)} names files that do not exist: {missing}"


def role_resolves(target: str, module: str, modules: set[str], role_kind: str) -> bool:
    """Whether a docstring's cross-reference names something that exists."""
    name = target.split("<")[-1].rstrip(">").lstrip("~").removesuffix("()")
    if name.startswith("django_sse_exec."):
        return exists(name)
    scopes = [module]
    while "." in scopes[-1]:
        scopes.append(scopes[-1].rsplit(".", 1)[0])
    if name.startswith("."):
        return any(exists(scope + name) for scope in scopes)
    if any(exists(f"{scope}.{name}") for scope in scopes) or exists(name):
        return True
    if role_kind == "mod":
        return False
    classes = [f"{module}.{attr}" for attr, value in vars(resolve(module)).items() if isinstance(value, type)]
    return any(exists(f"{owner}.{name}") for owner in classes) or any(
        exists(f"{other}.{name}") for other in modules)


def roles_in(path: Path, module: str, modules: set[str]) -> list[str]:
    broken = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for match in re.finditer(r":(\w+):`([^`]+)`", line):
            if ROLE.match(match.group(0)) and not role_resolves(match.group(2), module, modules, match.group(1)):
                broken.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    return broken


def test_every_cross_reference_in_the_package_names_something_that_exists():
    modules = module_names()
    broken = [line for module, path in modules.items() for line in roles_in(path, module, set(modules))]
    assert not broken, "cross-references to nothing (moved or renamed?):\n" + "\n".join(broken)


def test_a_cross_reference_to_a_moved_module_is_caught():
    modules = set(module_names())
    assert role_resolves(".fanout", "django_sse_exec.hub.hub", modules, "mod")
    assert role_resolves("Hub.end", "django_sse_exec.hub.subscriber", modules, "meth")
    assert role_resolves("stop", "django_sse_exec.hub.hub", modules, "meth")  # a method of its class
    assert not role_resolves(".guard", "django_sse_exec.hub.hub", modules, "mod")
    assert not role_resolves("django_sse_exec.leases", "django_sse_exec.integrations.tasks", modules, "mod")
