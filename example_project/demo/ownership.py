"""Which executions this browser (and, when logged in, this user) started.

Knowing an execution id must never be enough to read it, so the demo hands out
stream URLs only for executions the caller started: their ids live in a signed
cookie (no database needed), signed for the logged-in user (or for anonymous
visitors) so a cookie minted for one user is worthless to another.

A valid stream token in a shared link (``/?execution=<id>&token=<token>``,
printed by ``manage.py simulate_execution``) grants what the token grants and
no more (:func:`shared_token`): viewing that execution, with that very token,
for as long as the token lives. It never joins the cookie (so it never grants
cancel, and a reload without the token shows nothing), and the page's stream
URL carries the link's token rather than a new one (so the stream stops when
the token expires).
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from django_sse_exec.auth.policies import check_token

COOKIE = "demo_executions"
#: The browser's own feed (anonymous visitors): ``browser:<this cookie's value>``.
FEED_COOKIE = "demo_feed"
#: Most execution ids one cookie remembers (the oldest are forgotten first).
REMEMBERED = 20
#: Seconds the cookie lives.
COOKIE_AGE = 24 * 3600


def _salt(user: Any) -> str:
    pk = user.pk if user is not None and getattr(user, "is_authenticated", False) else ""
    return f"demo.executions:{pk}"


def owned(request: HttpRequest, user: Any) -> list[str]:
    """The execution ids ``request``'s browser started as ``user`` (oldest first)."""
    raw = request.get_signed_cookie(COOKIE, default=None, salt=_salt(user), max_age=COOKIE_AGE)
    if not raw:
        return []
    try:
        ids = json.loads(raw)
    except ValueError:
        return []
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def remember(response: HttpResponse, request: HttpRequest, user: Any, ids: list[str],
             execution_id: str) -> None:
    """Add ``execution_id`` to the cookie of ``ids`` on ``response``."""
    kept = [i for i in ids if i != execution_id][-(REMEMBERED - 1):] + [execution_id]
    response.set_signed_cookie(COOKIE, json.dumps(kept, separators=(",", ":")),
                               salt=_salt(user), max_age=COOKIE_AGE, httponly=True,
                               samesite="Strict", secure=request.is_secure())


def user_of_token(user: Any) -> Any:
    """What to bind stream tokens to: the logged-in user, else nobody."""
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def feed_of(request: HttpRequest, user: Any) -> tuple[str, bool]:
    """The feed this browser's executions join, and whether its cookie is new.

    A logged-in user's executions join ``user:<pk>`` (every browser of theirs
    sees them); an anonymous visitor's join ``browser:<random>``, kept in a
    signed cookie, so the recent list is live on every tab of that browser.
    """
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.pk}", False
    value = request.get_signed_cookie(FEED_COOKIE, default=None, salt=FEED_COOKIE,
                                      max_age=COOKIE_AGE)
    if isinstance(value, str) and len(value) == 24 and value.isalnum():
        return f"browser:{value}", False
    value = request.META.setdefault("demo.new_feed", secrets.token_hex(12))
    return f"browser:{value}", True


def remember_feed(response: HttpResponse, request: HttpRequest, feed: str) -> None:
    """Keep a new anonymous feed in this browser's cookie."""
    response.set_signed_cookie(FEED_COOKIE, feed.partition(":")[2], salt=FEED_COOKIE,
                               max_age=COOKIE_AGE, httponly=True, samesite="Strict",
                               secure=request.is_secure())


def shared_token(request: HttpRequest, user: Any, execution_id: str) -> str | None:
    """The request's ``?token=`` if it grants ``execution_id`` to this visitor, else None."""
    token = request.GET.get("token")
    if not execution_id or not token:
        return None
    user_pk = user.pk if user is not None and getattr(user, "is_authenticated", False) else None
    return token if check_token(token, execution_id, user_pk) is None else None


def shared_stream_url(execution_id: str, token: str) -> str:
    """The stream URL of a shared execution, with the link's own token (it lives no longer)."""
    return reverse("django_sse_exec:stream", args=[execution_id]) + "?" + urlencode({"token": token})
