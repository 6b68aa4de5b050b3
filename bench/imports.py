"""The package's import graph, read from its source, against the architecture page's layers.

``python -m bench.imports`` prints the figures (modules, import edges, cycles,
imports inside functions) and every place where the package breaks the rules of
``docs/architecture.md``; ``tests/test_architecture.py`` asserts on the same
analysis, so the page, the figures and the tests share one parser.

What counts:

* a **module** is a ``.py`` file of the package (a package is its
  ``__init__.py``); migrations are Django's generated files and are left out;
* an **edge** is a module-level import of another module of the package
  (``from .store import get_store`` is an edge to ``store``; ``from . import
  checks`` an edge to ``checks``). Importing ``a.b.c`` also runs ``a.b``: that
  parent is an edge too for importers outside it (not for the root, the public
  face every module runs first);
* imports under ``if TYPE_CHECKING:`` never run: they count for the layering
  (a type is still a dependency) but not as edges;
* an import **inside a function** runs when the function is called; the page
  lists the ones allowed, with the reason.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_sse_exec"
PAGE = ROOT / "docs" / "architecture.md"
NAME = PACKAGE.name
#: Django's generated migration files: named on the page as one package.
SKIPPED = ("migrations",)


@dataclass(frozen=True)
class Import:
    """One import statement's target, as an absolute module name."""

    importer: str
    target: str
    line: int
    in_function: bool = False
    type_only: bool = False

    @property
    def internal(self) -> bool:
        return self.target == NAME or self.target.startswith(NAME + ".")


@dataclass
class Page:
    """What ``docs/architecture.md`` says: each unit's layer, the paths it names, the
    imports inside functions it allows (importer, imported) with their reasons."""

    layers: dict[str, int] = field(default_factory=dict)
    named: set[str] = field(default_factory=set)
    allowed: dict[tuple[str, str], str] = field(default_factory=dict)


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if any(part in SKIPPED for part in parts):
            continue
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool,
             modules: dict[str, Path]) -> list[str]:
    """The absolute modules one import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    submodules = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in modules]
    names_only = len(submodules) < len(node.names)
    return ([source] if names_only else []) + submodules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool = False, type_only: bool = False
          ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function, type_only
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(child, True, type_only)
        elif isinstance(child, ast.If) and _is_type_checking(child):
            yield from _walk(child, in_function, True)
        else:
            yield from _walk(child, in_function, type_only)


def imports(package: Path = PACKAGE) -> list[Import]:
    """Every import statement of the package's modules (internal and third-party)."""
    modules = module_names(package)
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node, in_function, type_only in _walk(tree):
            for target in _targets(node, name, path.name == "__init__.py", modules):
                found.append(Import(name, target, node.lineno, in_function, type_only))
    return found


def edges(found: Iterable[Import], modules: Iterable[str], parents: bool = True) -> set[tuple[str, str]]:
    """Module-level, run-time imports between the package's modules (see the module's
    docstring); with ``parents``, also the parent packages they run."""
    known = set(modules)
    out = set()
    for item in found:
        if item.in_function or item.type_only or not item.internal or item.target not in known:
            continue
        out.add((item.importer, item.target))
        parent = item.target.rsplit(".", 1)[0]
        while parents and parent != NAME and "." in parent:  # parents run first, for importers outside them
            if not item.importer.startswith(parent + ".") and item.importer != parent:
                out.add((item.importer, parent))
            parent = parent.rsplit(".", 1)[0]
    return {(a, b) for a, b in out if a != b}


def cycles(graph: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each a cycle or several)."""
    succ: dict[str, list[str]] = {}
    for a, b in sorted(graph):
        succ.setdefault(a, []).append(b)
        succ.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in succ:
        if start in index:
            continue
        work = [(start, iter(succ[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(succ[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def unit_of(module: str, modules: dict[str, Path]) -> str:
    """The top-level part a module belongs to, as the page names it: ``hub/``, ``conf.py``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__.py"
    top = modules.get(".".join(parts[:2]))
    return f"{parts[1]}/" if top is None or top.name == "__init__.py" else f"{parts[1]}.py"


def path_of(module: str, modules: dict[str, Path]) -> str:
    """A module as the page names it: ``hub/fanout.py``, ``layer/redis/`` (a package)."""
    if module == NAME:
        return "__init__.py"
    relative = modules[module].relative_to(modules[NAME].parent)
    return f"{relative.parent.as_posix()}/" if relative.name == "__init__.py" else relative.as_posix()


_CODE = re.compile(r"`([^`]+)`")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def read_page(text: str) -> Page:
    """Parse the page's tables: layers (``| n | `unit` | ...``), modules (``| `path` | ...``
    under "## Modules"), and imports inside functions (``| `importer` | `imported` | why |``)."""
    page = Page()
    section = ""
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
            continue
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = _cells(line)
        if section.startswith("layers") and cells[0].isdigit():
            for unit in _CODE.findall(cells[1]):
                page.layers[unit] = int(cells[0])
        elif section.startswith("modules"):
            page.named.update(_CODE.findall(cells[0]))
        elif section.startswith("imports inside functions") and len(cells) >= 3:
            importers, targets = _CODE.findall(cells[0]), _CODE.findall(cells[1])
            for importer in importers:
                for target in targets:
                    page.allowed[(importer, target)] = cells[2]
    return page


def layering_problems(found: Iterable[Import], layers: dict[str, int], modules: dict[str, Path]) -> list[str]:
    """Each import from a unit to another of its own layer or above (the page's order)."""
    problems = []
    for item in found:
        if not item.internal:
            continue
        source, target = unit_of(item.importer, modules), unit_of(item.target, modules)
        if source == target or source not in layers or target not in layers:
            continue
        if layers[target] >= layers[source]:
            problems.append(f"{item.importer} (layer {layers[source]}, {source}) imports {item.target} "
                            f"(layer {layers[target]}, {target}) at line {item.line}")
    return problems


def naming_problems(page: Page, modules: dict[str, Path]) -> list[str]:
    """Modules and packages the page does not name, and names it has that do not exist."""
    skipped = {f"{part}/" for part in SKIPPED if (modules[NAME].parent / part).is_dir()}
    exist = {path_of(module, modules) for module in modules} | skipped
    units = {unit_of(module, modules) for module in modules} | skipped
    problems = [f"not on the page: {path}" for path in sorted(exist - page.named)]
    problems += [f"on the page, not in the package: {path}" for path in sorted(page.named - exist)]
    problems += [f"in no layer: {unit}" for unit in sorted(units - set(page.layers))]
    problems += [f"layer of a unit that does not exist: {unit}" for unit in sorted(set(page.layers) - units)]
    return problems


def in_function_problems(found: Iterable[Import], page: Page, modules: dict[str, Path]) -> list[str]:
    """Imports inside functions the page does not allow, and allowances nothing uses.

    The page names the importer by its path (``apps.py``) and what it imports by
    its path too when it is of the package, else by its dotted name (``redis``)."""
    used = {(path_of(item.importer, modules),
             path_of(item.target, modules) if item.target in modules else item.target)
            for item in found if item.in_function}
    problems = [f"import inside a function, not allowed on the page: {importer} imports {target}"
                for importer, target in sorted(used - set(page.allowed))]
    problems += [f"allowed on the page, not in the package: {importer} imports {target}"
                 for importer, target in sorted(set(page.allowed) - used)]
    return problems


def figures(package: Path = PACKAGE) -> dict[str, int]:
    """Modules, import edges, cycles and imports inside functions of the package."""
    modules = module_names(package)
    found = imports(package)
    graph = edges(found, modules)
    return {"modules": len(modules), "import edges": len(edges(found, modules, parents=False)),
            "import edges with the parent packages they run": len(graph),
            "cycles": len(cycles(graph)),
            "imports inside functions": sum(item.in_function for item in found)}


def main() -> int:
    modules = module_names()
    found = imports()
    page = read_page(PAGE.read_text())
    for name, value in figures().items():
        print(f"{name}: {value}")
    problems = [*(f"cycle: {' -> '.join(cycle)}" for cycle in cycles(edges(found, modules))),
                *naming_problems(page, modules), *layering_problems(found, page.layers, modules),
                *in_function_problems(found, page, modules)]
    print("\n".join(problems) if problems else "the package follows docs/architecture.md")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
