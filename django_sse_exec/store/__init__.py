"""Choose the store backend from ``SSE_EXEC["STORE"]`` and keep one per process.

``"auto"`` picks Redis when the channel layer is channels_redis (the layer's
Redis hosts for everything; see :mod:`.hosts`) and memory otherwise. The instance is rebuilt when settings change
(``override_settings`` in tests).
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from ..conf import sse_settings
from ..layer.access import is_redis_layer
from .base import LogSlice, Store

__all__ = ["LogSlice", "Store", "get_store", "reset_store"]

BACKENDS = {
    "memory": "django_sse_exec.store.memory.MemoryStore",
    "redis": "django_sse_exec.store.redis.RedisStore",
}

_store: Store | None = None
_lock = threading.Lock()

logger = logging.getLogger("django_sse_exec")

#: Management commands that serve streams themselves: the in-memory store is theirs.
SERVING_COMMANDS = {"runserver", "runworker", "testserver"}


def backend_path() -> str:
    """Dotted path of the Store class the settings select."""
    choice = sse_settings.STORE
    if choice == "auto":
        choice = "redis" if is_redis_layer() else "memory"
    return BACKENDS.get(choice, choice)


def get_store() -> Store:
    """The process's Store, built on first use."""
    global _store
    if _store is None:
        with _lock:
            if _store is None:
                path = backend_path()
                try:
                    cls = import_string(path)
                except ImportError as exc:
                    raise ImproperlyConfigured(
                        f"SSE_EXEC['STORE'] = {sse_settings.STORE!r}: cannot import {path}: {exc}"
                    ) from exc
                heartbeat = float(sse_settings.HEARTBEAT)
                _store = cls(
                    history_max_events=int(sse_settings.HISTORY_MAX_EVENTS),
                    history_max_bytes=int(sse_settings.HISTORY_MAX_BYTES),
                    page_events=int(sse_settings.REPLAY_PAGE_EVENTS),
                    page_bytes=int(sse_settings.REPLAY_PAGE_BYTES),
                    history_ttl=float(sse_settings.HISTORY_TTL),
                    closed_ttl=float(sse_settings.CLOSED_TTL),
                    member_ttl=3 * heartbeat,
                    send_keys_max=int(sse_settings.SEND_KEYS_MAX),
                    stall_after=sse_settings.STALL_AFTER,
                )
                if path == BACKENDS["memory"]:
                    warn_if_no_server_here(sys.argv)
    return _store


def warn_if_no_server_here(argv: list[str]) -> bool:
    """Log once (True) when the in-memory store is built in a process that serves no
    streams: ``manage.py shell``, a project's own command, a Celery worker. What it
    sends stays in this process, and no browser ever sees it."""
    path = argv[0] if argv else ""
    program = os.path.basename(path)
    if path.endswith(os.sep + "__main__.py"):  # python -m django / python -m celery
        program = os.path.basename(os.path.dirname(path))
    if program == "celery" or (
            program in ("manage.py", "django-admin", "django")
            and len(argv) > 1 and argv[1] not in SERVING_COMMANDS):
        logger.warning(
            "django_sse_exec: the channel layer is in-memory, so events sent from this "
            "process (%s) reach no server and no browser; for several processes configure "
            "channels_redis (CHANNEL_LAYERS BACKEND "
            "'channels_redis.pubsub.RedisPubSubChannelLayer')", " ".join(argv[:2]))
        return True
    return False


def reset_store() -> None:
    """Drop the process's Store so the next use builds it from current settings."""
    global _store
    with _lock:
        _store = None


@receiver(setting_changed)
def _on_setting_changed(setting: str, **kwargs: object) -> None:
    if setting in ("SSE_EXEC", "CHANNEL_LAYERS"):
        reset_store()
