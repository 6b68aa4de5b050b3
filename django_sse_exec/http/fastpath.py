"""An optional ASGI fast path for the stream endpoint.

A stream served through Django's request/response machinery (handler, middleware
chain, ``StreamingHttpResponse``) costs ~50 KB and ~1.4 ms per connection. This
module serves the very same stream, at the very same URL, with bare ASGI
messages, and hands every other request to Django::

    # asgi.py
    from django.core.asgi import get_asgi_application
    from django_sse_exec.asgi import wrap

    application = wrap(get_asgi_application())

Nothing about the stream is re-implemented here: :func:`~django_sse_exec.streams.single.open_stream`
applies the connect rules (404, 403, 204) and yields the bytes; this module only
frames them as ``http.response.start`` / ``http.response.body`` messages and
stops when the client sends ``http.disconnect``.

What differs from the view, by design:

* Django's middleware does not run for stream requests. The request handed to
  the ``AUTHORIZE`` policy is a real ``ASGIRequest`` (``GET``, ``headers``,
  ``COOKIES``, ``META``); when ``SessionMiddleware`` and
  ``AuthenticationMiddleware`` are in ``MIDDLEWARE`` it also gets a lazy
  ``session``, ``user`` and ``auser()``, built exactly as those two middleware
  build them (nothing is loaded unless the policy asks). Any other middleware a
  policy relies on (custom authentication, ``request.urlconf``) does not run:
  use the view for such projects.
* Headers other middleware would add (cookies, CSP) are not added; the
  security headers of :mod:`django_sse_exec.streams.headers` are, as on the view.
* The stream URL is matched against ``ROOT_URLCONF``: a request is served here
  only if Django's resolver maps its path to :func:`~django_sse_exec.http.views.stream_view`.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.core.handlers.asgi import ASGIRequest
from django.urls import NoReverseMatch, Resolver404, get_script_prefix, resolve, reverse
from django.utils.functional import SimpleLazyObject

from ..runtime.drive import Driven
from ..streams.connect import Outcome, last_event_id_of, position_of
from ..streams.headers import as_asgi, response_headers
from ..streams.many.feeds import open_feed_stream
from ..streams.many.sets import open_multi_stream
from ..streams.single import open_stream
from ..streams.write_now import DIRECT_SEND
from ..telemetry import metrics
from .views import feed_view, multi_view, stream_view

logger = logging.getLogger("django_sse_exec")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


class StreamFastPath:
    """ASGI app: the stream endpoint served directly, everything else by ``django_app``."""

    def __init__(self, django_app: ASGIApp) -> None:
        self.django_app = django_app
        self._shape: tuple[str, str] | None = None  # (prefix, suffix) of the stream URL
        self._shape_known = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            target = self.route(scope)
            if target is not None:
                await serve(scope, receive, send, target)
                return
        await self.django_app(scope, receive, send)

    def match(self, scope: Scope) -> str | None:
        """The execution id if ``scope`` is a request for one execution's stream, else None."""
        target = self.route(scope)
        return target[1].get("execution_id") if target and target[0] is stream_view else None

    def route(self, scope: Scope) -> tuple[Any, dict[str, Any]] | None:
        """``(view, kwargs)`` if ``scope`` is a request for a stream endpoint, else None."""
        shape = self._stream_shape()
        if shape is None:
            return None
        prefix, suffix = shape
        path = _path_info(scope)
        if not (path.startswith(prefix) and path.endswith(suffix)):
            return None
        # Cheap pre-filter passed: let Django's resolver decide, as it would for the view.
        try:
            match = resolve(path)
        except Resolver404:
            return None
        if match.func not in _OPENERS:
            return None
        return match.func, match.kwargs

    def _stream_shape(self) -> tuple[str, str] | None:
        """Where the app's URLs are mounted, found once with ``reverse()``."""
        if not self._shape_known:
            marker = "0sse0exec0marker0"
            try:
                url = reverse("django_sse_exec:stream", kwargs={"execution_id": marker})
            except NoReverseMatch:
                logger.warning("django_sse_exec.asgi.wrap(): the app's URLs are not included "
                               "in ROOT_URLCONF; every request goes to Django")
                url = None
            if url is not None:
                # reverse() includes the script prefix; paths are matched without it.
                # Every stream URL starts where the app is mounted and ends in /events.
                url = "/" + url.removeprefix(get_script_prefix())
                prefix, _, suffix = url.partition(marker)
                self._shape = (prefix.removesuffix("executions/"), suffix)
            self._shape_known = True
        return self._shape


def wrap(django_app: ASGIApp) -> ASGIApp:
    """Serve the stream endpoint directly and pass every other request to ``django_app``."""
    return StreamFastPath(django_app)


def _path_info(scope: Scope) -> str:
    path: str = scope["path"]
    script_name = settings.FORCE_SCRIPT_NAME or scope.get("root_path", "") or ""
    return path.removeprefix(script_name) if script_name else path


def _build_request(scope: Scope) -> ASGIRequest:
    """A Django request for the policy, with lazy session and user like the middleware gives."""
    request = ASGIRequest(scope, io.BytesIO())
    middleware = settings.MIDDLEWARE
    if _SESSION_MIDDLEWARE in middleware:
        engine = import_module(settings.SESSION_ENGINE)
        request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
        if _AUTH_MIDDLEWARE in middleware:
            # Imported only here: the project may not install django.contrib.auth.
            from django.contrib.auth.middleware import auser, get_user

            # Lazy, as AuthenticationMiddleware sets it (the stubs type it as the user itself).
            request.user = SimpleLazyObject(lambda: get_user(request))  # type: ignore[assignment]
            request.auser = partial(auser, request)
    return request


async def _respond(send: Send, status: int, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> None:
    headers = response_headers(status, has_body=bool(body)) if headers is None else headers
    length = [] if status == 204 else [(b"Content-Length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": [*as_asgi(headers), *length]})
    await send({"type": "http.response.body", "body": body})


def _open_single(request: ASGIRequest, execution_id: str) -> Awaitable[Outcome]:
    last_event_id = last_event_id_of(request.headers.get("Last-Event-ID"),
                                     request.GET.get("last_event_id"))
    return open_stream(request, execution_id, last_event_id, entry_point="fast")


def _open_multi(request: ASGIRequest) -> Awaitable[Outcome]:
    return open_multi_stream(request, request.GET.get("ids"), position_of(request),
                             entry_point="fast")


def _open_feed(request: ASGIRequest, feed: str) -> Awaitable[Outcome]:
    return open_feed_stream(request, feed, position_of(request), entry_point="fast")


#: How each stream view's connect is made here (the same function the view calls).
_OPENERS: dict[Any, Callable[..., Awaitable[Outcome]]] = {
    stream_view: _open_single, multi_view: _open_multi, feed_view: _open_feed,
}


async def serve(scope: Scope, receive: Receive, send: Send,
                target: tuple[Any, dict[str, Any]]) -> None:
    """Answer one stream request with ASGI messages (same statuses and bytes as the view).

    A 200 sends the stream's chunks until it ends or the client disconnects: one
    watcher task waits for ``http.disconnect`` and cancels this task, so the
    stream's generator is interrupted at its current ``await`` and cleans up in
    its ``finally`` — as Django does for the view. (One coroutine does all of it:
    a stream holds its frames for hours.)
    """
    view, kwargs = target
    try:
        request = _build_request(scope)
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it for the view
        # Parsing the query may raise TooManyFieldsSent: a 400, as Django gives the view.
        opening = _OPENERS[view](request, **kwargs)
    except SuspiciousOperation:  # DisallowedHost, TooManyFieldsSent, ...
        await _respond(send, 400, b"Bad Request")
        return
    except UnicodeDecodeError:
        await _respond(send, 400, b"Bad Request")
        return
    try:
        outcome = await opening
        del opening  # the finished coroutine: kept by this frame for the stream's lifetime
    except Exception:
        metrics.connected("fast", 500)
        logger.exception("could not open the stream %s %s", scope.get("path"), kwargs)
        await _respond(send, 500, b"Internal Server Error")
        return
    metrics.connected("fast", outcome.status)
    del request  # a stream lives for minutes: keep nothing per connection we do not need
    if outcome.status != 200 or outcome.body is None:
        await _respond(send, outcome.status, outcome.reason.encode(), outcome.headers)
        return
    body: Any = outcome.body
    me = asyncio.current_task()
    assert me is not None
    watcher = _Watch(receive, me)
    scope[DIRECT_SEND] = send  # the stream may write events itself (streams/write_now.py)
    try:
        await send({"type": "http.response.start", "status": 200,
                    "headers": as_asgi(outcome.headers)})
        del outcome
        async for chunk in body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        watcher.finished = True
        await send({"type": "http.response.body", "body": b""})
    except asyncio.CancelledError:
        if not watcher.disconnected:
            raise  # the server is cancelling us: let it
        if hasattr(me, "uncancel"):  # Python 3.11+ counts cancel requests; 3.10 does not
            me.uncancel()
    except OSError:
        pass  # the client went away mid-write
    except Exception:
        # Headers are out: end the response cleanly so the client reconnects
        # with its Last-Event-ID, instead of leaving it a broken connection.
        logger.exception("stream failed; ending the response")
        if not watcher.finished:
            watcher.finished = True
            await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.finished = True
        watcher.cancel()
        await body.aclose()


class _Watch:
    """Cancels the stream's task when the client disconnects, unless it finished first.

    It waits in ``receive()`` driven from the future it awaits
    (:class:`~django_sse_exec.runtime.drive.Driven`), not in a task of its own: a
    stream holds it for hours.
    """

    __slots__ = ("receive", "stream", "driven", "finished", "disconnected")

    def __init__(self, receive: Receive, stream: asyncio.Task[Any]) -> None:
        self.receive = receive
        self.stream = stream
        self.driven: Driven | None = None
        self.finished = False
        self.disconnected = False
        self._listen()

    def _listen(self) -> None:
        driven = Driven(self.receive(), self._received)
        if not driven.done:  # (a message already there was handled inside)
            self.driven = driven

    def _received(self, message: Any, exc: BaseException | None) -> None:
        if exc is not None:  # the server gave up on the request: nothing more to watch
            logger.debug("receive() failed while watching a stream: %r", exc)
            return
        if message["type"] != "http.disconnect":
            self._listen()
        elif not self.finished:
            self.disconnected = True
            self.stream.cancel()

    def cancel(self) -> None:
        if self.driven is not None:
            self.driven.cancel()



__all__ = ["StreamFastPath", "serve", "wrap"]
