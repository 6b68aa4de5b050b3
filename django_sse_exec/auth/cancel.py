"""Who may cancel an execution: signed cancel URLs, or the ``AUTHORIZE_CANCEL`` policy.

:func:`cancel_url` is :func:`~django_sse_exec.stream_url`'s counterpart: a
relative URL with a token signed with ``SECRET_KEY`` under its own salt, bound
to the execution, to a purpose (``cancel``), to a user if given, and to an
expiry. A stream token cannot cancel (another salt and no purpose) and a cancel
token cannot read a stream.

Why a POST to a signed cancel URL needs no CSRF token: CSRF is a site making
the victim's browser send a request that the *cookies* authorise. Here the
grant is in the URL itself, which a forging site does not have: it cannot mint
one (the signature), guess one, or reuse a stream URL it saw (another salt).
The token is bound to one execution, one purpose and, when minted with
``user``, to that logged-in user (the session must match: a leaked URL is no
use to anyone else); it expires (``TOKEN_MAX_AGE``); and the view answers only
POST, so a prefetch, a link or an ``<img>`` never cancels. A session-authorised
cancel (any other ``AUTHORIZE_CANCEL`` policy: the cookies are the proof) does
need Django's CSRF token, and the view checks it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.urls import reverse
from django.utils.module_loading import import_string

from ..conf import sse_settings
from ..wire import validate_execution_id
from .policies import check_bound_user, load_grant, only_token, sign_grant

SALT = "django_sse_exec.cancel"
PURPOSE = "cancel"


def make_cancel_token(execution_id: str, user: Any = None, max_age: float | None = None) -> str:
    """A signed token that lets its holder cancel ``execution_id`` (see :func:`cancel_url`)."""
    validate_execution_id(execution_id)
    return sign_grant({"e": execution_id, "p": PURPOSE}, user, max_age, SALT)


def cancel_url(execution_id: str, *, user: Any = None, max_age: float | None = None) -> str:
    """The relative URL that cancels the execution when POSTed to, with a signed token.

    Bound like :func:`~django_sse_exec.stream_url`'s: to ``execution_id``, to
    ``user`` if given (then only that logged-in user may use it), and to an
    expiry (``max_age``, default ``TOKEN_MAX_AGE``). Hand it only to those who
    may cancel. A POST needs no CSRF token (see the module's docstring); the
    answer is 202 (JSON ``{executionId, eventId}``), 409 once the execution has
    ended, 403 refused.
    """
    token = make_cancel_token(execution_id, user, max_age)
    path = reverse("django_sse_exec:cancel", args=[execution_id])
    return f"{path}?{urlencode({'token': token})}"


async def cancel_token(request: HttpRequest, execution_id: str) -> bool:
    """Default ``AUTHORIZE_CANCEL``: exactly one valid ``?token=`` of :func:`cancel_url`
    for this execution (bound to the request's user, if it was minted for one)."""
    payload = load_grant(only_token(request), SALT)
    if payload.get("e") != execution_id or payload.get("p") != PURPOSE:
        raise PermissionDenied("token is for another execution")
    await check_bound_user(request, payload)
    return True


cancel_token.built_in = True  # type: ignore[attr-defined]


def get_cancel_policy() -> Any:
    """The callable named by ``SSE_EXEC["AUTHORIZE_CANCEL"]`` (a dotted path or the callable)."""
    policy = sse_settings.AUTHORIZE_CANCEL
    return import_string(policy) if isinstance(policy, str) else policy


def needs_csrf(policy: Any) -> bool:
    """True unless the policy is the signed cancel URL (the only grant not in cookies)."""
    return policy is not cancel_token


__all__ = ["PURPOSE", "SALT", "cancel_token", "cancel_url", "get_cancel_policy",
           "make_cancel_token", "needs_csrf"]
