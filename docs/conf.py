"""Sphinx configuration of the documentation site (`make docs`).

Sphinx, because Django, channels and Celery document themselves with it: intersphinx
links to their objects (``INSTALLED_APPS``, ``StreamingHttpResponse``, channel layers)
and the site reads like theirs. Furo as the theme, MyST-Parser for the Markdown pages,
autodoc for the API reference (from the docstrings), and the ``sse_exec_docs``
extension for the settings reference (from ``django_sse_exec/conf.py``). Intersphinx
reads inventories kept in ``_inventories/`` (see its README): the build is offline.
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docs_settings")

import django  # noqa: E402

django.setup()

import django_sse_exec  # noqa: E402

project = "django-sse-exec"
author = "the django-sse-exec developers"
copyright = f"2026, {author}"  # noqa: A001
release = version = django_sse_exec.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sse_exec_docs"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext", "_inventories", "README.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # pages included from the repository start at any level

html_theme = "furo"
html_title = f"django-sse-exec {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"


def _channels_inventory() -> str:
    """``_inventories/channels.txt`` as a compressed objects.inv, next to the build."""
    lines = [line for line in (HERE / "_inventories" / "channels.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    out = HERE / "_build" / "inventories" / "channels.inv"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = b"# Sphinx inventory version 2\n# Project: Channels\n# Version: 4\n" \
             b"# The remainder of this file is compressed using zlib.\n"
    out.write_bytes(header + zlib.compress(("\n".join(lines) + "\n").encode()))
    return str(out)


intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", str(HERE / "_inventories" / "python.inv")),
    "django": ("https://docs.djangoproject.com/en/5.2/", str(HERE / "_inventories" / "django.inv")),
    "channels": ("https://channels.readthedocs.io/en/latest/", _channels_inventory()),
}
intersphinx_disabled_reftypes = ["*"]  # links to other projects say so: {external+django:...}
