"""The architecture page is the map of the code, kept true by the layout.

``docs/architecture.md`` names every package and module (and nothing else), orders
the packages in layers, and lists the imports allowed inside functions. The
package's imports, parsed from its source (``bench/imports.py``, which
``python -m bench.imports`` runs to print the figures), must follow it: no cycle
between modules, no import from a package's own layer or a higher one, no import
inside a function that the page does not allow with its reason. The last test
builds a small package with each fault in it, so each check is seen to fail.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bench import imports as graph

MODULES = graph.module_names()
FOUND = graph.imports()
PAGE = graph.read_page(graph.PAGE.read_text())


def figures() -> str:
    return ", ".join(f"{name}: {value}" for name, value in graph.figures().items())


def test_the_page_names_every_module_and_package_and_no_other():
    assert PAGE.named and PAGE.layers, "the page's tables were not found"
    problems = graph.naming_problems(PAGE, MODULES)
    assert not problems, "docs/architecture.md and the package disagree:\n" + "\n".join(problems)


def test_no_module_imports_another_in_a_cycle():
    found = graph.cycles(graph.edges(FOUND, MODULES))
    assert not found, f"import cycles ({figures()}):\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_package_imports_from_its_own_layer_or_a_higher_one():
    problems = graph.layering_problems(FOUND, PAGE.layers, MODULES)
    assert not problems, (f"imports against the layers of docs/architecture.md ({figures()}):\n"
                          + "\n".join(problems))


def test_imports_inside_functions_are_the_ones_the_page_allows_with_a_reason():
    assert all(reason.strip() for reason in PAGE.allowed.values())
    problems = graph.in_function_problems(FOUND, PAGE, MODULES)
    assert not problems, f"imports inside functions ({figures()}):\n" + "\n".join(problems)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def faulty(tmp_path: Path) -> Path:
    """A package with a cycle (through a parent package), a low layer importing a high
    one, an import inside a function, a type-only import, and an unnamed module."""
    package = tmp_path / graph.NAME
    write(package, {
        "__init__.py": "from .api import send\n",
        "api.py": "from .low.inner import x\n\ndef send():\n    import redis\n",
        "low/__init__.py": "from ..high.view import y\n",
        "low/inner.py": "x = 1\n",
        "high/__init__.py": "",
        "high/view.py": "from typing import TYPE_CHECKING\nfrom ..low import inner\n"
                        "if TYPE_CHECKING:\n    from ..api import send\ny = 2\n",
        "extra.py": "",
    })
    return package


def test_the_checks_find_each_fault(faulty):
    modules = graph.module_names(faulty)
    found = graph.imports(faulty)
    # high.view imports low.inner, which runs low/__init__, which imports high.view.
    assert graph.cycles(graph.edges(found, modules)) == [["django_sse_exec.high.view", "django_sse_exec.low"]]
    assert graph.cycles(graph.edges(found, modules, parents=False)) == []
    page = graph.read_page(textwrap.dedent("""\
        ## Layers
        | layer | package | owns |
        | --- | --- | --- |
        | 1 | `low/` | |
        | 2 | `high/`, `api.py` | |
        | 3 | `__init__.py` | |
        ## Modules
        | module | owns |
        | --- | --- |
        | `__init__.py`, `api.py`, `low/`, `low/inner.py`, `high/`, `high/view.py`, `gone.py` | |
        ## Imports inside functions
        | module | imports | why |
        | --- | --- | --- |
        | `api.py` | `celery` | optional |
        """))
    assert graph.naming_problems(page, modules) == [
        "not on the page: extra.py", "on the page, not in the package: gone.py", "in no layer: extra.py"]
    problems = graph.layering_problems(found, page.layers, modules)
    assert len(problems) == 2 and problems[0].startswith("django_sse_exec.high.view (layer 2, high/) imports "
                                                         "django_sse_exec.api (layer 2, api.py)")
    assert problems[1].startswith("django_sse_exec.low (layer 1, low/) imports django_sse_exec.high.view")
    assert graph.in_function_problems(found, page, modules) == [
        "import inside a function, not allowed on the page: api.py imports redis",
        "allowed on the page, not in the package: api.py imports celery"]
    assert graph.figures(faulty) == {"modules": 7, "import edges": 4,
                                     "import edges with the parent packages they run": 7,
                                     "cycles": 1, "imports inside functions": 1}
