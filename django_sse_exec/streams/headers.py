"""The response headers of the stream endpoint, defined once for both entry points.

The Django view and the ASGI fast path answer with the same headers, so a
project's security posture does not depend on which one serves a request (the
fast path runs no middleware). Every answer — stream, refusal, 204 — carries:

* ``Cache-Control: no-cache, no-store, private``: a stream and its refusals are
  per-request and may sit behind a token or a session; no cache (browser or
  shared) may store them. ``no-cache`` stays for intermediaries that only look
  for it (the SSE convention); ``no-store`` is what forbids storing.
* ``X-Content-Type-Options: nosniff``: the plain-text refusals and the event
  stream are never sniffed into something a browser would render.
* ``Referrer-Policy: no-referrer``: the stream URL carries a token; nothing
  fetched on its behalf may learn it.
* ``Vary: Cookie`` when the answer depended on the session (the policy read the
  session or the user): the same URL may get another answer with another cookie.
"""

from __future__ import annotations

#: Headers of every answer of the stream endpoint.
SECURITY_HEADERS: dict[str, str] = {
    "Cache-Control": "no-cache, no-store, private",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

#: Headers of a 200 stream.
STREAM_HEADERS: dict[str, str] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    **SECURITY_HEADERS,
    "X-Accel-Buffering": "no",
}

#: Content type of the short plain-text refusals (403, 404, 429, ...).
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"


def response_headers(status: int, *, vary_cookie: bool = False, has_body: bool = True,
                     retry_after: int | None = None,
                     server_timing: str | None = None) -> dict[str, str]:
    """The headers of an answer with ``status`` (the body's Content-Type included), and
    ``Server-Timing`` when the connect's steps were timed (``auth``, ``head``)."""
    if status == 200:
        headers = dict(STREAM_HEADERS)
    else:
        headers = {"Content-Type": TEXT_CONTENT_TYPE} if has_body else {}
        headers.update(SECURITY_HEADERS)
    if vary_cookie:
        headers["Vary"] = "Cookie"
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if server_timing:
        headers["Server-Timing"] = server_timing
    return headers


def session_read(request: object) -> bool:
    """True if the session (or the user, which lives in it) was read for this request:
    the answer then depends on the cookie, as ``SessionMiddleware`` reasons too."""
    session = getattr(request, "__dict__", {}).get("session")
    return bool(getattr(session, "accessed", False)) or any(
        hasattr(request, name) for name in ("_cached_user", "_acached_user"))


def as_asgi(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """``headers`` as the ASGI list of byte pairs."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


__all__ = ["SECURITY_HEADERS", "STREAM_HEADERS", "TEXT_CONTENT_TYPE", "as_asgi",
           "response_headers", "session_read"]
