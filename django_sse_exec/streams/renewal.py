"""A stream's token renewed before it expires, or the stream told it expired.

Tokens are checked at connect and expire (``TOKEN_MAX_AGE``), and the executions
streamed run for hours: a page whose connection drops after its token expired
would be refused on reconnect and freeze. So a stream opened with a token
(:func:`~django_sse_exec.auth.renewal.grant_of`) carries a :class:`Renewal`:
``TOKEN_RENEW_BEFORE`` before expiry, :func:`~django_sse_exec.streams.live.follow`
runs it, which re-runs the very authorisation its connect ran (the ``AUTHORIZE``
policy, or a set's or feed's) with the connect's request, now carrying the
latest token. Allowed, the stream sends ``stream-token-renewed`` with a fresh
token and the URL to reconnect with; refused (a revoked user), it sends
``stream-token-expired`` and ends. An outage while checking is not a refusal:
the check is tried again until the token expires.

A reconnect with a token that expired gets the same ``stream-token-expired`` in
a 200 whose ``retry:`` is a day (:func:`expired_stream`), not a bare 403: a page
learns why, and a plain ``EventSource`` does not come back with it every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..auth.renewal import Grant, carry_token, grant_of
from ..outages import ServiceUnavailable
from ..wire import token_expired_frame, token_renewed_frame

logger = logging.getLogger("django_sse_exec")

#: Seconds between checks while the authorisation's database or Redis is down.
OUTAGE_RETRY = 5.0
#: The end reason of a stream whose token expired unrenewed.
EXPIRED_END = "token_expired"

#: ``check(request) -> None | reason``: the connect's authorisation of this stream.
Check = Callable[[Any], Awaitable["str | None"]]


class Renewal:
    """When a stream's token is due for renewal, and how to renew it."""

    __slots__ = ("request", "check", "grant", "at")

    def __init__(self, request: Any, check: Check, grant: Grant) -> None:
        self.request = request
        self.check = check
        self.grant = grant
        #: Loop time at which :meth:`run` is due.
        self.at = 0.0
        self._schedule()

    def _schedule(self) -> None:
        wall = self.grant.expires - self.grant.lead()
        self.at = asyncio.get_running_loop().time() + (wall - time.time())

    async def run(self) -> tuple[bytes, bool]:
        """The bytes to write now, and True when the stream must end after them."""
        try:
            reason = await self.check(self.request)
        except ServiceUnavailable as exc:
            left = self.grant.expires - time.time()
            if left <= 0:
                return token_expired_frame(f"could not renew: {exc}"), True
            self.at = asyncio.get_running_loop().time() + min(OUTAGE_RETRY, left)
            return b": token renewal deferred (authorization unavailable)\n\n", False
        if reason is None:
            try:
                grant = self.grant.renewed()
            except Exception as exc:  # e.g. TOKEN_MAX_AGE_LIMIT lowered since
                reason = f"could not renew: {exc}"
            else:
                url = carry_token(self.request, grant.token)
                self.grant = grant
                self._schedule()
                return token_renewed_frame(grant.token, url, grant.expires), False
        logger.info("stream token not renewed (%s): the stream ends", reason)
        return token_expired_frame(reason), True


def renewal_for(request: Any, salt: str, claims: dict[str, Any], check: Check) -> Renewal | None:
    """A stream's :class:`Renewal` if its request carries a token of ``claims``, else None."""
    grant = grant_of(request, salt, claims)
    return None if grant is None else Renewal(request, check, grant)


async def expired_stream(reason: str) -> AsyncIterator[bytes]:
    """The body of a reconnect whose token expired: ``stream-token-expired``, then the end."""
    yield token_expired_frame(reason)


__all__ = ["EXPIRED_END", "OUTAGE_RETRY", "Renewal", "expired_stream", "renewal_for"]
