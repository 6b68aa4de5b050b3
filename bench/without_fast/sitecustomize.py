"""Hide the fast dependency set from this process (see bench/deps.py).

A ``None`` in ``sys.modules`` makes ``import hiredis`` (and the others) raise
``ImportError``, which is what redis-py and uvicorn check: they fall back to
their pure-Python parsers and the standard event loop as if the packages were
not installed.
"""

import sys

for _name in ("hiredis", "uvloop", "httptools"):
    sys.modules[_name] = None  # type: ignore[assignment]
