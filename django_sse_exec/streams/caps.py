"""Optional caps on the streams one user, or one client address, may hold open.

Every open stream costs the server a socket and tens of kilobytes; one client
opening hundreds (a script, a page opened in a loop) takes what others need.
``SSE_EXEC["MAX_STREAMS_PER_USER"]`` and ``["MAX_STREAMS_PER_ADDRESS"]`` (None,
the default: no cap) bound them; a connect over a cap is answered ``429`` with
``Retry-After: STREAM_CAP_RETRY_AFTER`` (by both entry points, through
:func:`~django_sse_exec.streams.single.open_stream`).

Counts are kept **per process**: a deployment of N web processes lets a user
hold up to N × the cap. Addresses are the connection's peer address as the
server reports it (``scope["client"]``): behind a proxy that is the proxy's
address — every client shares one count — unless the server takes the address
from ``X-Forwarded-For`` (daphne ``--proxy-headers``, uvicorn
``--forwarded-allow-ips``), which is only sound when the proxy overwrites that
header. Users are counted by primary key; anonymous requests only by address.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from ..auth.policies import load_user
from ..conf import sse_settings

_open: Counter[tuple[str, str]] = Counter()


class OverCap(Exception):
    """A connect that would exceed a cap; ``str()`` is the reason for the 429."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _cap(name: str) -> int | None:
    value = getattr(sse_settings, name)
    return None if value is None else int(value)


async def _user_key(request: Any) -> str | None:
    """The request's user primary key, if a user is logged in (needs auth middleware)."""
    user = await load_user(request)  # bounded database use, connections closed after
    if user is None:
        return None
    return str(user.pk) if getattr(user, "is_authenticated", False) else None


def _address(request: Any) -> str | None:
    scope = getattr(request, "scope", None) or {}
    client = scope.get("client")
    if client:
        return str(client[0])
    return getattr(request, "META", {}).get("REMOTE_ADDR") or None


class Slot:
    """The counts one admitted stream holds; released once, when the stream ends."""

    __slots__ = ("keys",)

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        self.keys = keys
        for key in keys:
            _open[key] += 1

    def release(self) -> None:
        """Give the counts back (idempotent)."""
        keys, self.keys = self.keys, []
        for key in keys:
            _open[key] -= 1
            if _open[key] <= 0:
                del _open[key]

    def hold(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``body``, releasing this slot when it ends, is closed or is dropped unstarted."""
        return _Held(body, self)


class _Held:
    """An async iterator over a stream's bytes that releases its slot at the end."""

    __slots__ = ("body", "slot")

    def __init__(self, body: AsyncIterator[bytes], slot: Slot) -> None:
        self.body, self.slot = body, slot

    def __aiter__(self) -> "_Held":
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.body.__anext__()
        except BaseException:  # the end, a disconnect (cancelled), or an error
            self.slot.release()
            raise

    async def aclose(self) -> None:
        self.slot.release()
        await self.body.aclose()  # type: ignore[attr-defined]

    def __del__(self) -> None:  # a response dropped before its first chunk
        self.slot.release()


async def admit(request: Any) -> Slot | None:
    """Count one more stream for ``request``'s user and address; None when no cap is set.

    Raises :class:`OverCap` when a cap would be exceeded (nothing is counted then).
    """
    per_user, per_address = _cap("MAX_STREAMS_PER_USER"), _cap("MAX_STREAMS_PER_ADDRESS")
    if per_user is None and per_address is None:
        return None
    retry_after = int(sse_settings.STREAM_CAP_RETRY_AFTER)
    keys: list[tuple[str, str]] = []
    if per_user is not None:
        user = await _user_key(request)
        if user is not None:
            if _open["user", user] >= per_user:
                raise OverCap("too many streams for this user", retry_after)
            keys.append(("user", user))
    if per_address is not None:
        address = _address(request)
        if address is not None:
            if _open["address", address] >= per_address:
                raise OverCap("too many streams from this address", retry_after)
            keys.append(("address", address))
    return Slot(keys)


__all__ = ["OverCap", "Slot", "admit"]
