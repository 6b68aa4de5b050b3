"""Who may read a stream: signed tokens and the pluggable ``AUTHORIZE`` policy.

``EventSource`` cannot send headers, so the default policy is a short-lived
token in the query string, minted by :func:`~django_sse_exec.stream_url`,
signed with ``SECRET_KEY`` (``django.core.signing``), bound to one execution
and optionally to one user. ``SSE_EXEC["AUTHORIZE"]`` replaces the policy with
any ``(request, execution_id) -> bool`` callable, sync or async; a policy may
also raise ``PermissionDenied("reason")`` to choose the 403 message.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.http import HttpRequest
from django.utils.module_loading import import_string

from .conf import sse_settings

SALT = "django_sse_exec.stream"


def make_token(execution_id: str, user: Any = None, max_age: float | None = None) -> str:
    """A signed token granting access to ``execution_id`` for ``max_age`` seconds.

    With ``user`` (a user object or primary key) only that authenticated user
    may use it.
    """
    age = float(sse_settings.TOKEN_MAX_AGE if max_age is None else max_age)
    payload: dict[str, Any] = {"e": execution_id, "x": int(time.time() + age)}
    if user is not None:
        payload["u"] = str(getattr(user, "pk", user))
    return signing.dumps(payload, salt=SALT, compress=True)


def check_token(token: str | None, execution_id: str, user_pk: Any = None) -> str | None:
    """Why ``token`` does not grant ``execution_id`` (a short reason), or None if it does.

    ``user_pk`` is the requesting user's primary key (None when anonymous); it is
    only consulted for tokens bound to a user.
    """
    if not token:
        return "missing token"
    if len(token) > 1024:
        return "invalid token"
    try:
        payload = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        return "invalid token"
    if not isinstance(payload, dict) or payload.get("e") != execution_id:
        return "token is for another execution"
    if not isinstance(payload.get("x"), int) or payload["x"] < time.time():
        return "expired token"
    bound = payload.get("u")
    if bound is not None and (user_pk is None or str(user_pk) != bound):
        return "token is for another user"
    return None


def token_is_user_bound(token: str) -> bool:
    """True when a (validly signed) token names a user, so the user must be loaded."""
    try:
        payload = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        return False
    return isinstance(payload, dict) and "u" in payload


async def _user(request: HttpRequest) -> Any:
    if hasattr(request, "auser"):
        return await request.auser()
    return await sync_to_async(lambda: request.user)()


# -- built-in policies -------------------------------------------------------


async def signed_token(request: HttpRequest, execution_id: str) -> bool:
    """Default policy: a valid ``?token=`` from ``stream_url()`` for this execution."""
    token = request.GET.get("token")
    user_pk = None
    if token and token_is_user_bound(token) and hasattr(request, "user"):
        user = await _user(request)
        user_pk = user.pk if user.is_authenticated else None
    reason = check_token(token, execution_id, user_pk)
    if reason:
        raise PermissionDenied(reason)
    return True


async def authenticated_user(request: HttpRequest, execution_id: str) -> bool:
    """Any logged-in user (session cookie; suits same-origin pages)."""
    if not hasattr(request, "user"):
        raise PermissionDenied("authentication middleware is not installed")
    user = await _user(request)
    if not user.is_authenticated:
        raise PermissionDenied("login required")
    return True


async def staff_only(request: HttpRequest, execution_id: str) -> bool:
    """Logged-in, active staff users only."""
    if not hasattr(request, "user"):
        raise PermissionDenied("authentication middleware is not installed")
    user = await _user(request)
    if not (user.is_authenticated and user.is_active and user.is_staff):
        raise PermissionDenied("staff only")
    return True


async def allow_any(request: HttpRequest, execution_id: str) -> bool:
    """Everyone may read every execution. For development only (a check warns)."""
    return True


# -- running the configured policy --------------------------------------------


def get_policy() -> Any:
    """The callable named by ``SSE_EXEC["AUTHORIZE"]``."""
    policy = sse_settings.AUTHORIZE
    return import_string(policy) if isinstance(policy, str) else policy


async def authorize(request: HttpRequest, execution_id: str) -> str | None:
    """Run the policy; return None when allowed or a short reason for the 403.

    A stream lives for minutes and must not pin a database connection: a sync
    policy runs in a worker thread and that thread's connections are closed
    right after it; after an async policy that loaded the user, likewise.
    """
    policy = get_policy()
    try:
        if inspect.iscoroutinefunction(policy):
            allowed = await policy(request, execution_id)
            if hasattr(request, "_acached_user") or hasattr(request, "_cached_user"):
                await sync_to_async(connections.close_all)()
        else:
            def run() -> Any:
                try:
                    return policy(request, execution_id)
                finally:
                    connections.close_all()

            allowed = await sync_to_async(run)()
    except PermissionDenied as exc:
        return str(exc) or "forbidden"
    return None if allowed else "forbidden"
