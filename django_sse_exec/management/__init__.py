"""What the management commands share: running the async API and reaching the right store.

The commands act on executions that live in a server's store. With the
in-memory store each process has its own, so a command run from a terminal
would talk to nobody; :func:`local_store_problem` says so instead of silently
doing nothing.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from django.core.management.base import CommandError

from ..exceptions import ExecutionClosed, StoreUnavailable
from ..store import backend_path, get_store
from ..wire import validate_execution_id

T = TypeVar("T")

MEMORY_STORE = "django_sse_exec.store.memory.MemoryStore"

LOCAL_STORE_HINT = (
    "the in-memory store lives inside each process, so this command cannot reach the "
    "server's executions; configure a channels_redis channel layer (the store follows it "
    "to Redis) or SSE_EXEC['STORE'] = 'redis'"
)


def local_store_problem() -> str | None:
    """The reason a command cannot reach other processes' executions, or None."""
    return LOCAL_STORE_HINT if backend_path() == MEMORY_STORE else None


def execution_id_arg(value: str) -> str:
    """Validate an ``execution_id`` argument (argparse reports a bad one as a usage error)."""
    try:
        return validate_execution_id(value)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def run(func: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``func()`` on a fresh loop; API errors become CommandErrors."""
    try:
        return asyncio.run(_run(func))
    except (TypeError, ValueError, ExecutionClosed, StoreUnavailable) as exc:
        raise CommandError(str(exc)) from exc


async def _run(func: Callable[[], Awaitable[T]]) -> T:
    try:
        return await func()
    finally:
        await get_store().aclose()
