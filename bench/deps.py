"""The fast dependency set: what it is, how a process runs with or without it, what it runs.

The set (the ``fast`` extra) is three maintained C implementations that the
servers and clients pick up on their own once installed:

* ``hiredis``: redis-py parses replies with it (``_HiredisParser`` /
  ``_AsyncHiredisParser``) and packs commands with it, whenever it imports at
  version 3.2 or later (``redis.utils.HIREDIS_AVAILABLE``, read when redis-py is
  imported; nothing to configure). channels_redis builds its pools with
  redis-py's default parser, so both layers and the app's store use it too.
* ``uvloop``: uvicorn's ``--loop auto`` (the default) uses it when it imports.
  daphne cannot be told: it creates its Twisted reactor's loop with
  ``asyncio.new_event_loop()`` when ``daphne.server`` is imported, which the
  ``daphne`` command does before it reads its arguments; so a uvloop policy
  must be set before that (:mod:`bench.daphne_uvloop`). Twisted's asyncio
  reactor only needs ``add_reader``/``add_writer``/``call_at``, which uvloop has.
* ``httptools``: uvicorn's ``--http auto`` (the default) uses it when it
  imports. daphne always parses HTTP with Twisted's own pure-Python parser.

Because all three are picked up automatically, a benchmark that measures
"without the set" in an environment that has it must hide them: processes
started with :func:`env_without` get a ``PYTHONPATH`` whose ``sitecustomize``
makes importing them fail, exactly as if they were not installed. Server
options are also explicit both ways (:func:`uvicorn_args`), and :func:`describe`
says what a process really runs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: The set, as ``pip`` names (also the extra ``fast`` in setup.cfg).
FAST_SET = ("hiredis", "uvloop", "httptools")

#: A directory whose ``sitecustomize`` hides the set from a process (see the module docstring).
WITHOUT_DIR = Path(__file__).resolve().parent / "without_fast"

#: Short label of each variant, for tables.
LABELS = {False: "stdlib", True: "fast set"}
#: A benchmark system run with the set is named with this suffix ("fast-uvicorn+fast").
SUFFIX = "+fast"


def reference_of(system: str) -> str:
    """The raw reference a system is compared with: the one with the same set."""
    return "raw" + SUFFIX if system.endswith(SUFFIX) else "raw"


def missing() -> list[str]:
    """The modules of the set that this interpreter cannot import."""
    return [name for name in FAST_SET if importlib.util.find_spec(name) is None]


def env_without(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) for a child that must not see the set."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(WITHOUT_DIR), env.get("PYTHONPATH", "")]))
    return env


def env_for(fast: bool, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` for a child with (``fast``) or without the set; with it, the set must import."""
    if not fast:
        return env_without(env)
    absent = missing()
    if absent:
        raise RuntimeError(f"the fast set is not installed (missing: {', '.join(absent)}); "
                           f"pip install -e '.[fast]'")
    env = dict(os.environ if env is None else env)
    # A parent that runs without the set must not pass that on.
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != WITHOUT_DIR]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def uvicorn_args(fast: bool) -> tuple[str, ...]:
    """uvicorn's loop and HTTP parser, named explicitly (``auto`` would pick whatever imports)."""
    return ("--loop", "uvloop", "--http", "httptools") if fast else ("--loop", "asyncio", "--http", "h11")


def daphne_command(fast: bool, python: str = sys.executable) -> list[str]:
    """The start of a daphne command line: uvloop's policy first with the set."""
    if fast:
        return [python, "-m", "bench.daphne_uvloop"]
    return [str(Path(python).parent / "daphne")]


def loop_factory(name: str) -> Any:
    """A new-loop callable for ``name``: "asyncio" (the standard library's) or "uvloop"."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"unknown event loop {name!r}")


def run(main: Coroutine[Any, Any, T], loop: str = "asyncio") -> T:
    """``asyncio.run(main)`` on a loop of the named kind (on every supported Python)."""
    new_loop = loop_factory(loop)()
    asyncio.set_event_loop(new_loop)
    try:
        return new_loop.run_until_complete(main)
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(new_loop) if not t.done()]
            for task in pending:
                task.cancel()
            new_loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            new_loop.run_until_complete(new_loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            new_loop.close()


def describe(loop: asyncio.AbstractEventLoop | None = None) -> dict[str, str]:
    """What this process runs: its event loop, redis-py's reply parser, uvicorn's HTTP parser."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
    out = {"loop": f"{type(loop).__module__}.{type(loop).__name__}" if loop else "none"}
    try:
        from redis.asyncio.connection import DefaultParser

        out["redis_parser"] = DefaultParser.__name__
    except ImportError:
        out["redis_parser"] = "redis-py not installed"
    try:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        out["uvicorn_http_auto"] = AutoHTTPProtocol.__name__
    except ImportError:
        out["uvicorn_http_auto"] = "uvicorn not installed"
    return out


__all__ = ["FAST_SET", "LABELS", "SUFFIX", "WITHOUT_DIR", "daphne_command", "describe", "env_for",
           "env_without", "loop_factory", "missing", "reference_of", "run", "uvicorn_args"]
