"""Fresh tokens for streams that outlive theirs: the same grant, a later expiry.

A stream token is checked at connect and expires; the executions streamed run
for hours, and a page whose connection drops after its token expired would be
refused for good. So a stream remembers the grant it was opened with: the
token's salt (one execution's, a set's or a feed's), its claims, its user and
its life. Before it expires, the stream re-runs its connect's authorisation
(:mod:`django_sse_exec.streams.renewal`) and, if it still passes, mints the same
grant with a later expiry here: same execution, set or feed, same user, as
long-lived as the first (cancel tokens are separate grants and are untouched).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import QueryDict

from ..conf import sse_settings
from .policies import load_grant, only_token, sign_grant, token_age


@dataclass
class Grant:
    """What a stream's token grants: renewable as the same grant with a later expiry."""

    salt: str
    claims: dict[str, Any]
    #: The bound user's primary key (as the token holds it), or None.
    user: str | None
    #: Seconds the token was minted for.
    life: float
    #: When it expires (Unix seconds).
    expires: int
    token: str

    def renewed(self) -> Grant:
        """The same grant, minted now (raises ``ValueError`` if its life is no longer allowed)."""
        token = sign_grant(self.claims, self.user, self.life, self.salt)
        payload = load_grant(token, self.salt)
        return Grant(self.salt, self.claims, self.user, self.life, payload["x"], token)

    def lead(self) -> float:
        """Seconds before expiry to renew: ``TOKEN_RENEW_BEFORE`` (default a quarter of
        the life), at most half the life."""
        setting = sse_settings.TOKEN_RENEW_BEFORE
        lead = self.life / 4 if setting is None else float(setting)
        return min(lead, self.life / 2)


def grant_of(request: Any, salt: str, claims: dict[str, Any]) -> Grant | None:
    """The request's ``?token=`` as a :class:`Grant`, if it is a valid token of exactly ``claims``.

    None when the request has no such token (a session policy, a custom one
    that does not use tokens): such a stream has nothing to renew.
    """
    try:
        token = only_token(request)
        payload = load_grant(token, salt)
    except (PermissionDenied, AttributeError):
        return None
    if token is None or any(payload.get(key) != value for key, value in claims.items()):
        return None
    try:
        life = token_age(payload.get("a"))
    except ValueError:  # minted before tokens carried their life, or past today's limit
        life = token_age(min(float(sse_settings.TOKEN_MAX_AGE),
                             float(sse_settings.TOKEN_MAX_AGE_LIMIT)))
    return Grant(salt, claims, payload.get("u"), life, payload["x"], token)


def carry_token(request: Any, token: str) -> str:
    """Put ``token`` in the request's query (for the next check) and return the URL to
    reconnect with: the request's path and query, the new token, no ``last_event_id``
    (the client adds its own position)."""
    query = QueryDict(request.META.get("QUERY_STRING", ""), mutable=True)
    query.setlist("token", [token])
    query.pop("last_event_id", None)
    request.GET = query
    request.META["QUERY_STRING"] = encoded = query.urlencode(safe=",")
    return f"{request.path}?{encoded}"


__all__ = ["Grant", "carry_token", "grant_of"]
