"""The connect rules every kind of stream shares, and the outcome of a connect.

One execution's stream, a set's and a feed's each decide their own refusals
(404 malformed, 403 not authorised, 400 bad format, 204 nothing more) in a
``decide`` step (its authorisation through :func:`authorised`); :func:`connect`
wraps it in what they share: the caps (429), an outage anywhere answered as a 200
that only says when to retry (so ``EventSource`` comes back), ``Vary: Cookie``
whenever the session was read, and the connect's span and ``Server-Timing``.
Both entry points, the view and the ASGI fast path, turn an :class:`Outcome`
into a response with the same headers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..auth.policies import EXPIRED
from ..outages import ServiceUnavailable, guard, retry_body
from ..telemetry import tracing
from ..wire import parse_last_event_id
from .caps import OverCap, admit
from .headers import response_headers, session_read
from .live import retry_ms
from .renewal import expired_stream


@dataclass
class Outcome:
    """The result of a connect: a status, a short reason, and the body for a 200."""

    status: int
    reason: str = ""
    body: AsyncIterator[bytes] | None = None
    #: The answer depended on the session (the policy read it): ``Vary: Cookie``.
    vary_cookie: bool = False
    #: Seconds for ``Retry-After`` (a 429 from a stream cap).
    retry_after: int | None = None
    #: How long the connect's steps took, for ``Server-Timing``.
    timings: Timings | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Every header of this answer, the same for the view and the fast path."""
        return response_headers(self.status, vary_cookie=self.vary_cookie,
                                has_body=bool(self.reason), retry_after=self.retry_after,
                                server_timing=self.timings.header() if self.timings else None)


class Timings:
    """How long each step of a connect took: ``with timings("auth"): ...``."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.steps.append((step, (time.perf_counter() - started) * 1000))

    def header(self) -> str:
        """The ``Server-Timing`` value: ``auth;dur=0.4, head;dur=1.2`` (milliseconds)."""
        return ", ".join(f"{step};dur={ms:.1f}" for step, ms in self.steps)


async def authorised(timings: Timings, check: Awaitable[str | None]) -> Outcome | None:
    """Run a connect's authorisation ``check`` (timed as ``auth``, in its own span): the
    answer to its refusal, or None when it allowed (:func:`refusal`)."""
    with tracing.span("sse_exec.auth"), timings("auth"):
        return refusal(await check)


def refusal(reason: str | None) -> Outcome | None:
    """The answer to an authorisation that refused (``reason``), or None when it allowed.

    A 403, except for a token that expired: a 200 whose body is only
    ``stream-token-expired`` (:mod:`.renewal`), so a page learns why and a plain
    ``EventSource`` does not come back with the same token every few seconds.
    """
    if reason is None:
        return None
    if reason == EXPIRED:
        return Outcome(200, body=expired_stream(reason))
    return Outcome(403, reason)


def position_of(request: Any) -> str | None:
    """A stream of many's client position, unparsed: ``Last-Event-ID``, else ``?last_event_id=``."""
    return request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")


def last_event_id_of(header: str | None, query: str | None) -> int | None:
    """The client's position: the ``Last-Event-ID`` header, else ``?last_event_id=``."""
    parsed = parse_last_event_id(header)
    return parsed if parsed is not None else parse_last_event_id(query)


async def connect(request: Any, decide: Callable[[Timings], Awaitable[Outcome]], *,
                  label: str) -> Outcome:
    """The connect rules every kind of stream shares, around ``decide`` (its 403/204/body).

    ``decide(timings)`` times its steps in ``timings`` (a stream's ``Server-Timing``).
    Then the caps (429; a per-user cap may read the session too); an outage
    anywhere is a 200 whose body only says when to retry; ``Vary: Cookie``
    whenever the session was read. ``label`` names the stream in the connect's span.
    """
    with tracing.span("sse_exec.connect", **{"sse_exec.execution_id": label}):
        return await _connect(request, decide)


async def _connect(request: Any, decide: Callable[[Timings], Awaitable[Outcome]]) -> Outcome:
    timings = Timings()
    try:
        outcome = await decide(timings)
        if outcome.status != 200:
            outcome.vary_cookie = session_read(request)
            return outcome
        slot = await guard("stream caps", admit(request))
    except OverCap as exc:
        return Outcome(429, str(exc), vary_cookie=session_read(request),
                       retry_after=exc.retry_after)
    except ServiceUnavailable as exc:  # not a refusal: a 200 the client retries
        return Outcome(200, str(exc), body=retry_body(exc, retry_ms()),
                       vary_cookie=session_read(request))
    body = outcome.body
    return Outcome(200, body=slot.hold(body) if slot and body else body,
                   vary_cookie=session_read(request), timings=timings)


__all__ = ["Outcome", "Timings", "authorised", "connect", "last_event_id_of", "position_of",
           "refusal"]
