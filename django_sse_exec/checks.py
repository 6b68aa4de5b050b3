"""System checks: catch configurations that silently lose events or leak them."""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from django.conf import settings
from django.core.checks import Warning, register

from .conf import DEFAULTS, sse_settings


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Unknown keys, an invalid prefix, allow-any in production, memory layer + Celery."""
    from .layers import is_memory_layer

    messages: list[Warning] = []
    for key in sse_settings.unknown_keys():
        messages.append(Warning(
            f"SSE_EXEC has an unknown key {key!r}",
            hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
            id="django_sse_exec.W001",
        ))
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,30}", str(sse_settings.KEY_PREFIX)):
        messages.append(Warning(
            f"SSE_EXEC['KEY_PREFIX'] = {sse_settings.KEY_PREFIX!r} is not a valid group prefix",
            hint="Use 1-30 characters of A-Z a-z 0-9 _ . -",
            id="django_sse_exec.W002",
        ))
    policy = sse_settings.AUTHORIZE
    if policy in ("django_sse_exec.auth.allow_any",) and not settings.DEBUG:
        messages.append(Warning(
            "SSE_EXEC['AUTHORIZE'] allows anyone to read any execution's stream with DEBUG off",
            hint="Use the default signed-token policy or django_sse_exec.auth.authenticated_user.",
            id="django_sse_exec.W003",
        ))
    uses_celery = importlib.util.find_spec("celery") is not None and any(
        name.startswith("CELERY") for name in dir(settings)
    )
    if uses_celery and is_memory_layer():
        messages.append(Warning(
            "Celery is configured but the channel layer is in-memory: events sent from a "
            "Celery worker cannot reach the web process's streams",
            hint="Use channels_redis (CHANNEL_LAYERS BACKEND "
                 "'channels_redis.core.RedisChannelLayer'); the event store follows it to Redis.",
            id="django_sse_exec.W004",
        ))
    return messages
