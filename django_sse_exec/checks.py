"""System checks: catch configurations that silently lose events or leak them."""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.template import TemplateDoesNotExist
from django.template.loader import get_template

from .auth.db_slots import check_db_connections
from .auth.policies import allow_any, get_policy
from .conf import DEFAULTS, check_values
from .conf import given_settings as sse_settings  # checks report invalid values, so read them as given
from .execution.error_detail import formatter
from .http.require_asgi import check_asgi
from .layer.access import is_memory_layer, is_redis_layer
from .runtime.daphne_buffer import DAPHNE_TESTED, daphne_version, is_tested_daphne
from .store import backend_path
from .store.hosts import store_hosts
from .telemetry.metrics import multiprocess_dir_problem


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """No ASGI_APPLICATION, unknown keys, an invalid prefix, allow-any in production, memory layer + Celery,
    memory store + Redis layer, redis-py 8 read timeouts on the core layer."""
    values = check_values()
    if values:  # the checks below read settings through the app, which refuses them all
        return values
    messages: list[CheckMessage] = [*check_asgi(), *check_db_connections()]
    for key in sse_settings.unknown_keys():
        messages.append(Warning(
            f"SSE_EXEC has an unknown key {key!r}",
            hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
            id="django_sse_exec.W001",
        ))
    messages.extend(check_policy())
    uses_celery = importlib.util.find_spec("celery") is not None and (
        any(name.startswith("CELERY") for name in dir(settings))
        or bool(os.environ.get("CELERY_BROKER_URL"))
    )
    if uses_celery and is_memory_layer():
        messages.append(Warning(
            "Celery is configured but the channel layer is in-memory: events sent from a "
            "Celery worker cannot reach the web process's streams",
            hint="Use channels_redis (CHANNEL_LAYERS BACKEND "
                 "'channels_redis.pubsub.RedisPubSubChannelLayer'); the event store follows it "
                 "to Redis.",
            id="django_sse_exec.W004",
        ))
    if is_redis_layer() and backend_path() == "django_sse_exec.store.memory.MemoryStore":
        messages.append(Warning(
            "SSE_EXEC['STORE'] is 'memory' but the channel layer is channels_redis: each "
            "process would assign its own event ids and count only its own streams",
            hint="Remove SSE_EXEC['STORE'] (\"auto\" picks Redis) or set it to \"redis\".",
            id="django_sse_exec.W005",
        ))
    messages.extend(check_redis_read_timeout())
    messages.extend(check_redis_topology())
    messages.extend(check_templates())
    messages.extend(check_slow_client_guard())
    messages.extend(check_error_detail())
    messages.extend(check_operations())
    return messages


def check_operations() -> list[CheckMessage]:
    """Lease timings must be positive numbers, MULTI_STREAM_MAX a sane count, and a
    multiprocess metrics directory must exist."""
    messages: list[CheckMessage] = []
    for key in ("LEASE_TTL", "LEASE_CHECK", "LEASE_CLAIM_GRACE"):
        value = getattr(sse_settings, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value > 0):
            messages.append(Error(
                f"SSE_EXEC[{key!r}] = {value!r} is not a positive number of seconds",
                hint=f"Remove it (default {DEFAULTS[key]:g}) or give a positive number.",
                id="django_sse_exec.E005",
            ))
    cap = sse_settings.MULTI_STREAM_MAX
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 1000:
        messages.append(Error(
            f"SSE_EXEC['MULTI_STREAM_MAX'] = {cap!r} is not a whole number from 1 to 1000",
            hint="Remove it (default 100): a stream's cursor, sent back in a header, "
                 "grows with its executions, and proxies cap headers at 4-8 KB.",
            id="django_sse_exec.E012",
        ))
    problem = multiprocess_dir_problem()
    if problem is not None:
        messages.append(Warning(
            f"{problem}: metrics are off in this process",
            hint="Create the directory (empty it at each deploy) before the processes start, "
                 "or unset the variable for per-process metrics.",
            id="django_sse_exec.W008",
        ))
    return messages


def check_error_detail() -> list[CheckMessage]:
    """ERROR_DETAIL must be a known mode or a formatter that can be imported."""
    try:
        custom = formatter()
    except Exception as exc:
        custom, problem = None, str(exc)
    else:
        problem = "" if custom is None or callable(custom) else "it is not callable"
    if not problem:
        return []
    return [Error(
        f"SSE_EXEC['ERROR_DETAIL'] = {sse_settings.ERROR_DETAIL!r} cannot be used: {problem}",
        hint='Use "auto", "type", "message", or the dotted path of an (exception) -> str '
             "callable; until then exceptions are published as their type only.",
        id="django_sse_exec.E013",
    )]


def check_slow_client_guard() -> list[CheckMessage]:
    """daphne applies no backpressure; the guard that bounds what a non-reading client
    costs reads daphne's internals and is used only for the tested versions."""
    version = daphne_version()
    if is_tested_daphne(version):
        return []
    tested = f"{'.'.join(map(str, DAPHNE_TESTED[0]))} <= daphne < " \
             f"{'.'.join(map(str, DAPHNE_TESTED[1]))}"
    return [Warning(
        f"daphne {version} is outside the versions the slow-client guard supports "
        f"({tested}): under it, a client that stops reading a stream makes the server "
        "buffer its events without limit",
        hint="Serve with uvicorn (it applies backpressure; the guard needs no internals "
             f"there), or install a supported daphne ({tested}).",
        id="django_sse_exec.W013",
    )]


def check_templates() -> list[CheckMessage]:
    """The widget and the HTML stream render the app's templates: they must be found."""
    try:
        get_template("django_sse_exec/state.html")
    except TemplateDoesNotExist:
        return [Warning(
            "django_sse_exec's templates cannot be found: {% sse_exec_progress %} and "
            "streams with ?format=html will fail",
            hint="Set APP_DIRS: True in TEMPLATES (or add "
                 "'django.template.loaders.app_directories.Loader' to its loaders).",
            id="django_sse_exec.W007",
        )]
    return []


def check_redis_read_timeout() -> list[CheckMessage]:
    """redis-py 8 reads time out after 5 s by default, exactly the core layer's idle
    blocking pop: an idle ``receive()`` then raises and streams stall. Hosts given as
    dicts with a larger ``socket_timeout`` avoid it."""
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    layer = layers.get(sse_settings.CHANNEL_LAYER) or {}
    if layer.get("BACKEND") != "channels_redis.core.RedisChannelLayer":
        return []
    try:
        import redis

        if int(redis.__version__.split(".")[0]) < 8:
            return []
    except (ImportError, ValueError):
        return []
    hosts = (layer.get("CONFIG") or {}).get("hosts") or [("localhost", 6379)]
    short = [h for h in hosts if not (isinstance(h, dict) and (
        h.get("socket_timeout") is None and "socket_timeout" in h
        or isinstance(h.get("socket_timeout"), (int, float)) and h["socket_timeout"] > 5))]
    if not short:
        return []
    return [Warning(
        "RedisChannelLayer with redis-py 8: reads time out after 5 s, the layer's idle "
        "receive blocks for 5 s, so idle streams stall",
        hint='Give hosts as dicts with a larger timeout, e.g. {"address": "redis://...", '
             '"socket_timeout": 30, "max_connections": 1000}, or pin redis<8.',
        id="django_sse_exec.W006",
    )]


def check_redis_topology() -> list[CheckMessage]:
    """The Redis store must be able to reach every host of the layer it follows, and
    REDIS_WAIT_REPLICAS / REDIS_WAIT_TIMEOUT must make sense."""
    messages: list[CheckMessage] = []
    on_redis = backend_path() == "django_sse_exec.store.redis.RedisStore"
    if on_redis:
        try:
            store_hosts()
        except ImproperlyConfigured as exc:
            messages.append(Error(
                f"The Redis event store cannot follow the channel layer's hosts: {exc}",
                hint="Give every host as channels_redis documents it (a URL, a (host, port) "
                     "pair, {'address': URL, ...}, or {'sentinels': [...], 'master_name': ...}), "
                     "or set SSE_EXEC['REDIS_URL'] to one Redis for the store.",
                id="django_sse_exec.E014"))
    replicas, timeout = sse_settings.REDIS_WAIT_REPLICAS, sse_settings.REDIS_WAIT_TIMEOUT
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0 or \
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
            not (math.isfinite(timeout) and timeout > 0):
        messages.append(Error(
            f"SSE_EXEC['REDIS_WAIT_REPLICAS'] = {replicas!r} / ['REDIS_WAIT_TIMEOUT'] = "
            f"{timeout!r}: the replica count must be an int >= 0 and the timeout positive "
            "seconds",
            hint="Use e.g. REDIS_WAIT_REPLICAS = 1 and REDIS_WAIT_TIMEOUT = 1.0 with Sentinel "
                 "(one replica must have each event before a send returns), or remove both.",
            id="django_sse_exec.E015"))
    elif replicas and not on_redis:
        messages.append(Warning(
            "SSE_EXEC['REDIS_WAIT_REPLICAS'] is set but the event store is not Redis: it has "
            "no effect",
            hint="Remove it, or use channels_redis (the store then follows it to Redis).",
            id="django_sse_exec.W014"))
    return messages


def check_policy() -> list[CheckMessage]:
    """Who may read streams: AUTHORIZE must load, allow-any must not reach production,
    and TOKEN_MAX_AGE must be a positive number of seconds."""
    messages: list[CheckMessage] = []
    try:
        policy = get_policy()
    except Exception as exc:
        return [Error(
            f"SSE_EXEC['AUTHORIZE'] = {sse_settings.AUTHORIZE!r} cannot be imported: {exc}",
            hint="Give the dotted path of a (request, execution_id) -> bool callable; "
                 "every stream is refused until then.",
            id="django_sse_exec.E003",
        )]
    if not callable(policy):
        messages.append(Error(
            f"SSE_EXEC['AUTHORIZE'] = {sse_settings.AUTHORIZE!r} is not callable",
            hint="Give the dotted path of a (request, execution_id) -> bool callable.",
            id="django_sse_exec.E003",
        ))
    elif policy is allow_any and not settings.DEBUG:
        messages.append(Warning(
            "SSE_EXEC['AUTHORIZE'] allows anyone to read any execution's stream with DEBUG off",
            hint="Use the default django_sse_exec.auth.signed_token, or "
                 "django_sse_exec.auth.authenticated_user for same-origin pages.",
            id="django_sse_exec.W003",
        ))
    age = sse_settings.TOKEN_MAX_AGE
    if isinstance(age, bool) or not isinstance(age, (int, float)) or not (
            math.isfinite(age) and age > 0):
        messages.append(Error(
            f"SSE_EXEC['TOKEN_MAX_AGE'] = {age!r} is not a positive number of seconds",
            hint="Stream tokens travel in URLs: keep them short-lived (default 3600).",
            id="django_sse_exec.E004",
        ))
    elif age > sse_settings.TOKEN_MAX_AGE_LIMIT:
        messages.append(Error(
            f"SSE_EXEC['TOKEN_MAX_AGE'] = {age!r} is above TOKEN_MAX_AGE_LIMIT "
            f"({sse_settings.TOKEN_MAX_AGE_LIMIT!r}): every stream_url() would raise",
            hint="Lower TOKEN_MAX_AGE (default 3600), or raise TOKEN_MAX_AGE_LIMIT "
                 "knowing that URL tokens end up in logs.",
            id="django_sse_exec.E004",
        ))
    return messages
