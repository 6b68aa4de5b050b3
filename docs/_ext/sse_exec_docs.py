"""Sphinx directives that print reference pages from the package itself.

``{sse-exec-settings}`` prints every ``SSE_EXEC`` key from
:data:`django_sse_exec.conf.SETTINGS` (default, accepted values, description,
and the system check that reports a bad value), so the settings reference is
generated from ``conf.py`` and cannot drift from it. Each key gets a
``setting-<KEY>`` target, so pages link to it with ``{ref}`setting-KEEPALIVE```.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx


def inline(text: str) -> list[nodes.Node]:
    """Plain text with `backticks` as literals."""
    parts = re.split(r"`([^`]+)`", text)
    return [nodes.literal(part, part) if n % 2 else nodes.Text(part) for n, part in enumerate(parts)]


def facts(*pairs: tuple[str, list[nodes.Node]]) -> nodes.paragraph:
    """``Label: value · Label: value`` on one line."""
    out: list[nodes.Node] = []
    for n, (label, value) in enumerate(pairs):
        out += [nodes.Text(" · ")] if n else []
        out += [nodes.strong(f"{label}: ", f"{label}: "), *value]
    return nodes.paragraph("", "", *out)


class SettingsDirective(Directive):
    """Every setting of ``django_sse_exec.conf.SETTINGS``, in the order it defines them."""

    def run(self) -> list[nodes.Node]:
        from django_sse_exec.conf import SETTINGS

        env = self.state.document.settings.env
        out: list[nodes.Node] = []
        for key, item in SETTINGS.items():
            target = f"setting-{key.lower().replace('_', '-')}"
            section = nodes.section(ids=[target], names=[f"setting-{key}".lower()])
            section += nodes.title(key, "", nodes.literal(key, key))
            section += nodes.paragraph("", "", *inline(item.description))
            section += facts(("Default", [nodes.literal(repr(item.default), repr(item.default))]),
                             ("Accepts", inline(item.expected)),
                             ("Checked by", [nodes.literal(item.check_id, item.check_id)]))
            label = f"setting-{key}".lower()
            env.domaindata["std"]["labels"][label] = (env.docname, target, key)
            env.domaindata["std"]["anonlabels"][label] = (env.docname, target)
            out.append(section)
        return out


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("sse-exec-settings", SettingsDirective)
    # Django's own object type, so {external+django:std:setting}`INSTALLED_APPS` resolves.
    app.add_crossref_type("setting", "setting")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
