"""Who may read a stream: signed tokens and the pluggable ``AUTHORIZE`` policy.

``EventSource`` cannot send headers, so the default policy is a short-lived
token in the query string, minted by :func:`~django_sse_exec.stream_url`,
signed with ``SECRET_KEY`` (``django.core.signing``), bound to one execution
and optionally to one user. ``SSE_EXEC["AUTHORIZE"]`` replaces the policy with
any ``(request, execution_id) -> bool`` callable, sync or async; a policy may
also raise ``PermissionDenied("reason")`` to choose the 403 message.

Everything here fails closed: only a policy that returns exactly ``True``
grants access; a policy that raises anything else is logged and denies.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.http import HttpRequest
from django.utils.module_loading import import_string

from .conf import sse_settings
from .wire import validate_execution_id

logger = logging.getLogger("django_sse_exec")

SALT = "django_sse_exec.stream"
#: Longer ``?token=`` values are rejected before any signature work.
MAX_TOKEN_LENGTH = 1024


def make_token(execution_id: str, user: Any = None, max_age: float | None = None) -> str:
    """A signed token granting access to ``execution_id`` for ``max_age`` seconds.

    With ``user`` (a user object or primary key) only that authenticated user
    may use it. ``max_age`` defaults to ``SSE_EXEC["TOKEN_MAX_AGE"]``.

    Raises ``ValueError`` for an invalid execution id, a ``max_age`` that is not a
    finite number of seconds above zero (``inf`` would never expire; zero or less
    mints a token that is already expired) or above ``TOKEN_MAX_AGE_LIMIT`` (a
    URL token that outlives a day is a credential that leaks through logs), or an
    anonymous user (a token bound to nobody would be unusable; one silently bound
    to no user would be wider than asked).
    """
    validate_execution_id(execution_id)
    age = token_age(max_age)
    payload: dict[str, Any] = {"e": execution_id, "x": math.ceil(time.time() + age)}
    if user is not None:
        if getattr(user, "is_anonymous", False) or getattr(user, "pk", user) is None:
            raise ValueError("cannot bind a stream token to an anonymous user")
        payload["u"] = str(getattr(user, "pk", user))
    return signing.dumps(payload, salt=SALT, compress=True)


def token_age(max_age: Any = None) -> float:
    """``max_age`` (default ``TOKEN_MAX_AGE``) checked: finite, above 0, at most the limit."""
    value = sse_settings.TOKEN_MAX_AGE if max_age is None else max_age
    try:
        age = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"max_age must be a number of seconds, not {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(age):
        raise ValueError(f"max_age must be a finite number of seconds, not {value!r}")
    if age <= 0:
        raise ValueError(f"max_age must be above 0 seconds, not {value!r} "
                         "(such a token would already be expired)")
    limit = float(sse_settings.TOKEN_MAX_AGE_LIMIT)
    if age > limit:
        raise ValueError(f"max_age={value!r} is above SSE_EXEC['TOKEN_MAX_AGE_LIMIT'] "
                         f"({limit:g} s): stream URLs end up in logs, keep them short-lived")
    return age


def _grant(token: str | None, execution_id: str) -> dict[str, Any]:
    """The payload of a valid, unexpired token for ``execution_id``; else PermissionDenied."""
    if not token:
        raise PermissionDenied("missing token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise PermissionDenied("invalid token")
    try:
        payload = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise PermissionDenied("invalid token") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("x"), int):
        raise PermissionDenied("invalid token")
    if payload.get("e") != execution_id:
        raise PermissionDenied("token is for another execution")
    now = time.time()
    if payload["x"] <= now:
        raise PermissionDenied("expired token")
    if payload["x"] > now + float(sse_settings.TOKEN_MAX_AGE_LIMIT) + 1:
        # Minted for longer than the limit now allows (the limit was lowered).
        raise PermissionDenied("expired token")
    return payload


def _check_user(payload: dict[str, Any], user_pk: Any) -> None:
    """Raise PermissionDenied unless the token is unbound or bound to ``user_pk``."""
    bound = payload.get("u")
    if bound is None:
        return
    if user_pk is None:
        raise PermissionDenied("login required")
    if str(user_pk) != bound:
        raise PermissionDenied("token is for another user")


def check_token(token: str | None, execution_id: str, user_pk: Any = None) -> str | None:
    """Why ``token`` does not grant ``execution_id`` (a short reason), or None if it does.

    ``user_pk`` is the requesting user's primary key (None when anonymous); it is
    only consulted for tokens bound to a user.
    """
    try:
        _check_user(_grant(token, execution_id), user_pk)
    except PermissionDenied as exc:
        return str(exc)
    return None


async def _user(request: HttpRequest) -> Any:
    """The request's user (needs AuthenticationMiddleware), loaded without blocking."""
    if not hasattr(request, "user"):
        raise PermissionDenied("authentication middleware is not installed")
    if hasattr(request, "auser"):
        return await request.auser()
    return await sync_to_async(lambda: request.user)()


# -- built-in policies -------------------------------------------------------


async def signed_token(request: HttpRequest, execution_id: str) -> bool:
    """Default policy: exactly one valid ``?token=`` from ``stream_url()`` for this execution.

    A repeated ``token`` parameter is refused rather than guessing which one a
    proxy or firewall in front of the app looked at.
    """
    tokens = request.GET.getlist("token")
    if len(tokens) > 1:
        raise PermissionDenied("repeated token")
    payload = _grant(tokens[0] if tokens else None, execution_id)
    if "u" in payload:
        user = await _user(request)
        _check_user(payload, user.pk if user.is_authenticated else None)
    return True


async def authenticated_user(request: HttpRequest, execution_id: str) -> bool:
    """Any logged-in, active user, through the session cookie (same-origin pages).

    Every logged-in user may read every execution: use it when all users may see
    all executions, or write a policy that checks ownership.
    """
    user = await _user(request)
    if not (user.is_authenticated and user.is_active):
        raise PermissionDenied("login required")
    return True


async def staff_only(request: HttpRequest, execution_id: str) -> bool:
    """Logged-in, active staff users only (session cookie)."""
    user = await _user(request)
    if not (user.is_authenticated and user.is_active and user.is_staff):
        raise PermissionDenied("staff only")
    return True


async def allow_any(request: HttpRequest, execution_id: str) -> bool:
    """Everyone may read every execution. For development only (check W003 warns)."""
    return True


# -- running the configured policy --------------------------------------------


#: Built-in policies that touch the database only by loading the user.
_NO_DATABASE = (signed_token, allow_any)


def get_policy() -> Any:
    """The callable named by ``SSE_EXEC["AUTHORIZE"]`` (a dotted path or the callable)."""
    policy = sse_settings.AUTHORIZE
    return import_string(policy) if isinstance(policy, str) else policy


def _is_async(policy: Any) -> bool:
    """True for async functions, async callables and partials of either."""
    return iscoroutinefunction(policy) or iscoroutinefunction(getattr(policy, "__call__", None))


async def authorize(request: HttpRequest, execution_id: str) -> str | None:
    """Run the policy; return None when allowed or a short reason for the 403.

    Only ``True`` allows. ``PermissionDenied("reason")`` gives that reason; any
    other exception (including a policy that cannot be imported) is logged and
    denies with "authorization failed" — never a traceback to the client.

    A stream lives for minutes and must not pin a database connection: a sync
    policy runs in a worker thread and that thread's connections are closed
    right after it; after an async policy, likewise (skipped only for the
    built-ins that did not load the user, so the default costs no thread hop).
    """
    try:
        policy = get_policy()
        if _is_async(policy):
            allowed = await policy(request, execution_id)
            if policy not in _NO_DATABASE or hasattr(request, "_acached_user") or hasattr(
                    request, "_cached_user"):
                await sync_to_async(connections.close_all)()
        else:
            def run() -> Any:
                try:
                    return policy(request, execution_id)
                finally:
                    connections.close_all()

            allowed = await sync_to_async(run)()
            if inspect.isawaitable(allowed):  # an async callable we could not detect
                allowed = await allowed
    except PermissionDenied as exc:
        return str(exc)[:200] or "forbidden"
    except Exception:
        logger.exception("authorization policy failed for execution %s", execution_id)
        return "authorization failed"
    return None if allowed is True else "forbidden"


__all__ = [
    "allow_any", "authenticated_user", "authorize", "check_token", "get_policy",
    "make_token", "signed_token", "staff_only", "token_age",
]
