"""The documentation stays true: its code is run, its reference pages are complete.

* Every fenced code block of ``docs/`` (and of README.md) is either a recipe
  (``% recipe: NAME`` before it, ``<!-- recipe:NAME -->`` in the README) that a
  test reads, or explicitly marked as not for copying (``% not-copied: why``:
  shell output, a diagram, the wire format). An unmarked block fails here.
* Each recipe name is read by a test other than this one; a README recipe is the
  docs' recipe of the same name, character for character.
* Every system check id the package can emit is on the checks page with its fix,
  and the page lists no other; every ``: reconnect (…)`` reason a stream can end
  with is on the protocol page.
* The uvicorn log configuration of the operations page redacts tokens when loaded.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import uuid
from pathlib import Path

import pytest

from tests.recipe import DOCS, snippet, snippets
from tests.server import ROOT

PACKAGE = ROOT / "django_sse_exec"
#: A fence line (indented in a list item, or not); directives ({toctree}, {note}) are not code.
FENCE = re.compile(r"^ *(?P<fence>```+)(?P<info>[^`]*)$")
DOCS_MARK = re.compile(r"^% (recipe: [\w-]+|not-copied: \S.*)$")
README_MARK = re.compile(r"^<!-- (recipe:[\w-]+|not-copied: \S.*) -->$")


def pages() -> list[Path]:
    return [p for p in sorted(DOCS.rglob("*.md")) if "_build" not in p.parts and "_inventories" not in p.parts]


def code_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line, the line before, info string) of each fenced code block, nested fences skipped."""
    blocks, closing, before = [], None, ""
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence is None:
            before = line
            continue
        ticks, info = fence.group("fence"), fence.group("info").strip()
        if closing is not None:
            if ticks == closing and not info:
                closing = None
        else:
            closing = ticks
            if not info.startswith("{") or info.startswith("{code-block}"):
                blocks.append((number, before.strip(), info))
        before = line
    return blocks


@pytest.mark.parametrize("path", [*pages(), ROOT / "README.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_block_is_run_by_a_test_or_marked_not_for_copying(path):
    mark = README_MARK if path.name == "README.md" else DOCS_MARK
    unmarked = [f"{path.relative_to(ROOT)}:{line} ```{info}" for line, before, info in code_blocks(path.read_text())
                if not mark.match(before)]
    assert not unmarked, "code blocks neither run by a test nor marked '% not-copied: why':\n" + "\n".join(unmarked)


def test_an_unmarked_block_is_caught():
    text = "Some text.\n\n```python\nprint(1)\n```\n\n% not-copied: output\n```text\n1\n```\n"
    assert [before for _, before, _ in code_blocks(text)] == ["", "% not-copied: output"]
    assert [info for *_, info in code_blocks("```{note}\nhi\n```\n````{tab}\n```sh\nx\n```\n````\n")] == []


def test_every_recipe_is_read_by_a_test_and_the_readme_repeats_them_exactly():
    found = snippets()
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("*.py"))
    unread = [name for name in found if not re.search(rf"""["']{re.escape(name)}["']""", tests)]
    assert not unread, f"recipes no test reads: {unread}"
    readme = ROOT.joinpath("README.md").read_text()
    copies = re.findall(r"^<!-- recipe:([\w-]+) -->\n```[\w-]*\n(.*?)\n```", readme, re.S | re.M)
    assert copies, "the README shows no recipe"
    for name, text in copies:
        assert name in found, f"README recipe {name!r} is not in docs/"
        assert text + "\n" == found[name][1], f"README recipe {name!r} differs from the docs'"


def emitted_check_ids() -> set[str]:
    from django_sse_exec.conf import SETTINGS

    ids = set(re.findall(r"""id=["'](django_sse_exec\.[EW]\d{3})["']""", package_source()))
    return ids | {item.check_id for item in SETTINGS.values()}


def test_the_checks_page_lists_every_check_id_with_its_fix():
    page = (DOCS / "reference" / "checks.md").read_text()
    listed = re.findall(r"^## `(django_sse_exec\.[EW]\d{3})`", page, re.M)
    assert sorted(listed) == sorted(emitted_check_ids())
    for section in re.split(r"^## ", page, flags=re.M)[1:]:
        assert "**Fix:**" in section, f"no fix for {section.splitlines()[0]}"


def package_source() -> str:
    """Every module of the package, as one text (found by content, not by file name)."""
    return "\n".join(path.read_text() for path in sorted(PACKAGE.rglob("*.py")))


def test_the_protocol_page_names_every_reconnect_reason():
    page = (DOCS / "reference" / "protocol.md").read_text()
    source = package_source()
    planned = re.search(r"_REJOIN_REASONS = \(([^)]*)\)", source)
    reasons = re.findall(r'"([\w ]+)"', planned.group(1)) if planned else []
    steps = set(re.findall(r"""(?:guard|unavailable)\(["']([\w ]+)["']""", source))
    outage = re.search(r"def cause_of\(.*?(?=\ndef )", source, re.S)
    causes = set(re.findall(r'return "(\w+)"', outage.group(0))) if outage else set()
    assert reasons and steps and causes
    missing = [f"reconnect ({reason})" for reason in reasons if f"reconnect ({reason})" not in page]
    missing += [f"step {step!r}" for step in steps if f"`{step}`" not in page]
    missing += [f"cause {cause!r}" for cause in causes if f"`{cause}`" not in page]
    missing += [] if "reconnect (subscribe failed)" in page else ["reconnect (subscribe failed)"]
    assert not missing, missing


def test_the_uvicorn_log_configuration_redacts_tokens(capsys):
    logging.config.dictConfig(json.loads(snippet("uvicorn-log-config")))
    try:
        logging.getLogger("uvicorn.access").info("GET /sse/executions/e/events?token=secret-abc HTTP/1.1")
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    out = capsys.readouterr().out
    assert "token=[redacted]" in out and "secret-abc" not in out


def test_the_alerts_name_metrics_that_exist():
    source = package_source()
    names = {name.removesuffix("_total") for name in re.findall(r"\bsse_exec_\w+", snippet("alerts"))}
    assert names and all(f'"{name}"' in source for name in names), names


def test_the_reporter_example_ends_the_execution_as_it_says():
    from django_sse_exec import get_execution_state

    execution_id = f"docs-reporter-{uuid.uuid4().hex[:8]}"
    exec(snippet("reporter").replace('"exec-42"', repr(execution_id)), {})  # noqa: S102
    state = get_execution_state(execution_id)
    assert state.closed and state.summary["status"] == "failed"
    assert (state.summary["successful"], state.summary["failed"], state.summary["total"]) == (1, 1, 2)
