"""Who may read a stream of many executions: tokens for a set or a feed, and the policy.

A fixed set's token signs a digest of its ids in order (the ids travel in
``?ids=``, so the URL stays short and the token cannot be stretched to one id
more); a feed's token signs the feed's name. Both are minted like a single
stream's (:func:`~django_sse_exec.auth.policies.sign_grant`: expiry, optional user) with
salts of their own, so no token of one kind opens another.

With a policy other than the default signed token, the project's
``AUTHORIZE`` policy decides: for a set, it is asked about every id (all must
pass); for a feed, it is asked about ``"feed:<name>"`` — a string no
execution id can be (ids have no ``:``), so a policy tells the two apart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from ..outages import unavailable
from ..wire import validate_execution_id
from ..wire.many import set_digest, validate_feed_name
from .policies import (
    authorize,
    check_bound_user,
    get_policy,
    load_grant,
    only_token,
    sign_grant,
    signed_token,
)

SET_SALT = "django_sse_exec.multi"
FEED_SALT = "django_sse_exec.feed"
logger = logging.getLogger("django_sse_exec")
#: What a custom policy is asked about for a feed: ``FEED_SUBJECT + name``.
FEED_SUBJECT = "feed:"


def make_set_token(execution_ids: list[str], user: Any = None, max_age: float | None = None) -> str:
    """A token granting the executions of ``execution_ids`` (in this order), as one stream."""
    for execution_id in execution_ids:
        validate_execution_id(execution_id)
    return sign_grant({"s": set_digest(execution_ids)}, user, max_age, SET_SALT)


def make_feed_token(feed: str, user: Any = None, max_age: float | None = None) -> str:
    """A token granting the stream of ``feed``."""
    return sign_grant({"f": validate_feed_name(feed)}, user, max_age, FEED_SALT)


async def authorize_set(request: HttpRequest, execution_ids: list[str]) -> str | None:
    """None if the request may read every execution of the set, else the reason for the 403."""
    if get_policy() is signed_token:
        return await _check_token(request, SET_SALT, "s", set_digest(execution_ids),
                                  "token is for another set of executions")
    # A custom or session policy: every id must pass (the first refusal is the answer).
    reasons = await asyncio.gather(*(authorize(request, e) for e in execution_ids))
    return next((reason for reason in reasons if reason is not None), None)


async def authorize_feed(request: HttpRequest, feed: str) -> str | None:
    """None if the request may read the feed, else the reason for the 403."""
    if get_policy() is signed_token:
        return await _check_token(request, FEED_SALT, "f", feed, "token is for another feed")
    return await authorize(request, FEED_SUBJECT + feed)


async def _check_token(request: HttpRequest, salt: str, claim: str, value: str,
                       other: str) -> str | None:
    try:
        payload = load_grant(only_token(request), salt)
        if payload.get(claim) != value:
            raise PermissionDenied(other)
        await check_bound_user(request, payload)
    except PermissionDenied as exc:
        return str(exc)
    except Exception as exc:  # the user's database: an outage is retried, not refused
        outage = unavailable("authorization", exc)
        if outage is not None:
            raise outage from exc
        logger.exception("checking a stream token failed")
        return "authorization failed"
    return None


__all__ = ["FEED_SUBJECT", "authorize_feed", "authorize_set", "make_feed_token", "make_set_token"]
