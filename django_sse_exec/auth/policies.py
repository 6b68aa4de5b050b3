"""Who may read a stream: signed tokens and the pluggable ``AUTHORIZE`` policy.

``EventSource`` cannot send headers, so the default policy is a short-lived
token in the query string, minted by :func:`~django_sse_exec.stream_url`,
signed with ``SECRET_KEY`` (``django.core.signing``), bound to one execution
and optionally to one user. ``SSE_EXEC["AUTHORIZE"]`` replaces the policy with
any ``(request, execution_id) -> bool`` callable, sync or async; a policy may
also raise ``PermissionDenied("reason")`` to choose the 403 message.

Everything here fails closed: only a policy that returns exactly ``True``
grants access. A policy whose database or Redis is down raises
:class:`~django_sse_exec.outages.ServiceUnavailable` (the client retries, and
gets no event meanwhile); one that raises anything else is logged and denies.
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

from ..conf import sse_settings
from ..outages import unavailable
from ..wire import validate_execution_id
from .db_slots import database_slot

logger = logging.getLogger("django_sse_exec")

SALT = "django_sse_exec.stream"
#: The reason a validly signed token that has expired is refused with.
EXPIRED = "expired token"
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
    return sign_grant({"e": execution_id}, user, max_age, SALT)


def sign_grant(claims: dict[str, Any], user: Any, max_age: float | None, salt: str) -> str:
    """A signed, expiring token of ``claims``, bound to ``user`` if given (see :func:`make_token`)."""
    age = token_age(max_age)
    # "a": the token's life, so a stream renewing it mints one as long-lived.
    life = int(age) if age == int(age) else age
    payload: dict[str, Any] = {**claims, "x": math.ceil(time.time() + age), "a": life}
    if user is not None:
        if getattr(user, "is_anonymous", False) or getattr(user, "pk", user) is None:
            raise ValueError("cannot bind a stream token to an anonymous user")
        payload["u"] = str(getattr(user, "pk", user))
    return signing.dumps(payload, salt=salt, compress=True)


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
    payload = load_grant(token, SALT)
    if payload.get("e") != execution_id:
        raise PermissionDenied("token is for another execution")
    return payload


def load_grant(token: str | None, salt: str, max_length: int = MAX_TOKEN_LENGTH) -> dict[str, Any]:
    """The payload of a valid, unexpired token signed with ``salt``; else PermissionDenied."""
    if not token:
        raise PermissionDenied("missing token")
    if len(token) > max_length:
        raise PermissionDenied("invalid token")
    try:
        payload = signing.loads(token, salt=salt)
    except signing.BadSignature:
        raise PermissionDenied("invalid token") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("x"), int):
        raise PermissionDenied("invalid token")
    now = time.time()
    if payload["x"] <= now:
        raise PermissionDenied(EXPIRED)
    if payload["x"] > now + float(sse_settings.TOKEN_MAX_AGE_LIMIT) + 1:
        # Minted for longer than the limit now allows (the limit was lowered).
        raise PermissionDenied(EXPIRED)
    return payload


def check_user(payload: dict[str, Any], user_pk: Any) -> None:
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
        check_user(_grant(token, execution_id), user_pk)
    except PermissionDenied as exc:
        return str(exc)
    return None


async def load_user(request: HttpRequest) -> Any:
    """The request's user, loaded without blocking; None without AuthenticationMiddleware.

    Loading it may take a database connection: it holds one of the process's
    ``AUTHORIZE_DB_CONNECTIONS`` slots, and closes its connections before giving it
    back (a stream must not pin one). A user loaded before costs nothing.
    """
    if not hasattr(request, "user"):
        return None
    if hasattr(request, "_acached_user") and hasattr(request, "auser"):
        return await request.auser()  # cached by Django's auser(): no query
    async with database_slot():
        try:
            if hasattr(request, "auser"):
                return await request.auser()
            return await sync_to_async(lambda: request.user)()
        finally:
            await sync_to_async(connections.close_all)()


async def _user(request: HttpRequest) -> Any:
    """The request's user for a policy; PermissionDenied without AuthenticationMiddleware."""
    user = await load_user(request)
    if user is None:
        raise PermissionDenied("authentication middleware is not installed")
    return user


# -- built-in policies -------------------------------------------------------


async def signed_token(request: HttpRequest, execution_id: str) -> bool:
    """Default policy: exactly one valid ``?token=`` from ``stream_url()`` for this execution.

    A repeated ``token`` parameter is refused rather than guessing which one a
    proxy or firewall in front of the app looked at.
    """
    await check_bound_user(request, _grant(only_token(request), execution_id))
    return True


def only_token(request: HttpRequest) -> str | None:
    """The request's one ``?token=``; PermissionDenied if it is repeated."""
    tokens = request.GET.getlist("token")
    if len(tokens) > 1:
        raise PermissionDenied("repeated token")
    return tokens[0] if tokens else None


async def check_bound_user(request: HttpRequest, payload: dict[str, Any]) -> None:
    """PermissionDenied unless the token is unbound or bound to the request's user."""
    if "u" in payload:
        user = await _user(request)
        check_user(payload, user.pk if user.is_authenticated else None)


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


#: Built-in policies: they touch the database only through :func:`_user`, which
#: bounds and closes its connections itself (others say so with ``built_in = True``).
_BUILT_IN = (signed_token, authenticated_user, staff_only, allow_any)


def _is_built_in(policy: Any) -> bool:
    return policy in _BUILT_IN or getattr(policy, "built_in", False) is True


def get_policy() -> Any:
    """The callable named by ``SSE_EXEC["AUTHORIZE"]`` (a dotted path or the callable)."""
    policy = sse_settings.AUTHORIZE
    return import_string(policy) if isinstance(policy, str) else policy


def _is_async(policy: Any) -> bool:
    """True for async functions, async callables and partials of either."""
    return iscoroutinefunction(policy) or (callable(policy) and iscoroutinefunction(policy.__call__))


async def _run_custom(policy: Any, request: HttpRequest, execution_id: str) -> Any:
    """Call a project's policy with a database slot held, closing its connections after."""
    async with database_slot():
        if _is_async(policy):
            try:
                return await policy(request, execution_id)
            finally:
                await sync_to_async(connections.close_all)()

        def run() -> Any:
            try:
                return policy(request, execution_id)
            finally:
                connections.close_all()

        allowed = await sync_to_async(run)()
        if inspect.isawaitable(allowed):  # an async callable we could not detect
            allowed = await allowed
        return allowed


async def authorize(request: HttpRequest, execution_id: str, policy: Any = None) -> str | None:
    """Run the policy (``AUTHORIZE``'s unless given); return None when allowed or a short
    reason for the 403.

    Only ``True`` allows. ``PermissionDenied("reason")`` gives that reason. A
    failure of what the policy depends on (database, Redis, network, timeout)
    is not a refusal: it raises :class:`~django_sse_exec.outages.ServiceUnavailable`
    (logged) so the client is told to retry. Any other exception (a bug, a
    policy that cannot be imported) is logged and denies with "authorization
    failed" — never a traceback to the client.

    A stream lives for minutes and must not pin a database connection, and a
    connect burst must not open one connection per client: a project's policy
    runs holding one of ``AUTHORIZE_DB_CONNECTIONS`` slots and its connections
    are closed right after it (a sync policy runs in a worker thread); the
    built-ins do the same only when they load the user, so the default
    signed-token policy costs no thread hop.
    """
    try:
        policy = get_policy() if policy is None else policy
        if _is_built_in(policy):
            allowed = await policy(request, execution_id)
        else:
            allowed = await _run_custom(policy, request, execution_id)
    except PermissionDenied as exc:
        return str(exc)[:200] or "forbidden"
    except Exception as exc:
        outage = unavailable("authorization", exc)
        if outage is not None:
            raise outage from exc
        logger.exception("authorization policy failed for execution %s", execution_id)
        return "authorization failed"
    return None if allowed is True else "forbidden"


__all__ = [
    "EXPIRED", "allow_any", "authenticated_user", "authorize", "check_bound_user", "check_token",
    "check_user", "get_policy", "load_grant", "load_user", "make_token", "only_token",
    "sign_grant", "signed_token", "staff_only", "token_age",
]
