"""Control endpoints that let tests drive a server process through the public API.

With the in-memory layer the only way to reach a server's streams is from inside
that process, so tests POST here. They exist only in the tests' URLconf.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

import django_sse_exec as sse


def _body(request: HttpRequest) -> dict:
    return json.loads(request.body or b"{}")


@csrf_exempt
async def send(request: HttpRequest) -> JsonResponse:
    """Send ``events`` (a list of [event, data]) to ``execution_id`` in order; return ids."""
    body = _body(request)
    ids = []
    try:
        for event, data in body["events"]:
            ids.append(await sse.asend_sse_event(body["execution_id"], event, data))
    except (ValueError, TypeError, sse.ExecutionClosed) as exc:
        return JsonResponse({"error": str(exc), "ids": ids}, status=400)
    return JsonResponse({"ids": ids})


@csrf_exempt
def sync_send(request: HttpRequest) -> JsonResponse:
    """The same through the sync helpers, from Django's sync-view thread."""
    body = _body(request)
    ids = [sse.send_sse_event(body["execution_id"], e, d) for e, d in body["events"]]
    return JsonResponse({"ids": ids})


@csrf_exempt
async def feed_add(request: HttpRequest) -> JsonResponse:
    """Add ``execution_id`` to ``feed``; return the entry's id."""
    from django_sse_exec import aadd_to_feed

    body = _body(request)
    return JsonResponse({"id": await aadd_to_feed(body["feed"], body["execution_id"])})


@csrf_exempt
async def script(request: HttpRequest) -> JsonResponse:
    """Run ``ops`` in order, in one request: ``["send", execution_id, event, data]``,
    ``["fill", execution_id, count, size]`` (``count`` events of ``size`` bytes),
    ``["add", feed, execution_id]`` or ``["close", execution_id]``; return each one's
    (last) id."""
    from django_sse_exec import aadd_to_feed

    ids = []
    for op in _body(request)["ops"]:
        if op[0] == "send":
            ids.append(await sse.asend_sse_event(op[1], op[2], op[3]))
        elif op[0] == "fill":
            for n in range(op[2]):
                last = await sse.asend_sse_event(op[1], "step", {"n": n, "pad": "x" * op[3]})
            ids.append(last)
        elif op[0] == "add":
            ids.append(await aadd_to_feed(op[1], op[2]))
        else:
            ids.append(await sse.aclose_sse_connections(op[1]))
    return JsonResponse({"ids": ids})


@csrf_exempt
async def close(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"id": await sse.aclose_sse_connections(_body(request)["execution_id"])})


async def count(request: HttpRequest, execution_id: str) -> JsonResponse:
    return JsonResponse({"count": await sse.aget_sse_client_count(execution_id)})


async def hub_stats(request: HttpRequest) -> JsonResponse:
    """How many streams and groups the server's hub holds (leak checks)."""
    from django_sse_exec.hub.running import get_hub

    hub = get_hub()
    unsent = [sub.backlog.pending() for sub in hub.subscribers() if sub.backlog is not None]
    return JsonResponse({"streams": hub.local_count(), "groups": hub.group_count(),
                         "tasks": len(asyncio.all_tasks()), "max_unsent": max(unsent, default=0),
                         "measured": len(unsent), "server_max_unsent": _server_max_unsent()})


async def objects(request: HttpRequest) -> JsonResponse:
    """Objects the garbage collector tracks in this process, after a full collection
    (leak checks: exact where RSS also counts memory the allocator keeps), and the
    memory blocks Python's allocator holds (``blocks``: every live object, strings and
    bytes too, which the collector does not track)."""
    gc.collect()
    return JsonResponse({"objects": len(gc.get_objects()), "blocks": sys.getallocatedblocks()})


async def residue(request: HttpRequest) -> JsonResponse:
    """What this process keeps per execution besides the hub (leak checks): the
    in-memory store's executions and the in-memory channel layer's groups and
    channels (-1 where the server uses another store or layer)."""
    from django_sse_exec.layer.access import get_layer
    from django_sse_exec.store import get_store
    from django_sse_exec.store.memory import MemoryStore

    store, layer = get_store(), get_layer()
    groups, channels = getattr(layer, "groups", None), getattr(layer, "channels", None)
    return JsonResponse({
        "store_executions": store.execution_count() if isinstance(store, MemoryStore) else -1,
        "layer_groups": len(groups) if isinstance(groups, dict) else -1,
        "layer_channels": len(channels) if isinstance(channels, dict) else -1})


def _server_max_unsent() -> int:
    """The largest unsent buffer of any connection Twisted holds (daphne), found
    independently of the app's guard: what a client that never reads costs."""
    import sys

    reactor = getattr(sys.modules.get("twisted.internet"), "reactor", None)
    if reactor is None:
        return 0
    sizes = [len(t.dataBuffer) - t.offset + t._tempDataLen
             for t in {*reactor.getReaders(), *reactor.getWriters()}
             if hasattr(t, "dataBuffer") and hasattr(t, "_tempDataLen")]
    return max(sizes, default=0)


@csrf_exempt
def login(request: HttpRequest) -> JsonResponse:
    """Log in ``username`` (created on first use; ``staff`` sets is_staff) and set the session cookie.

    Needs a database the server shares with the test (``TEST_DB_PATH``).
    """
    from django.contrib.auth import login as auth_login
    from django.contrib.auth.models import User

    body = _body(request)
    user, _ = User.objects.get_or_create(
        username=body["username"], defaults={"is_staff": bool(body.get("staff"))})
    auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return JsonResponse({"pk": user.pk})


def htmx_page(request: HttpRequest, execution_id: str) -> HttpResponse:
    """A page whose only content is the progress widget (``?user=<pk>`` binds its token,
    ``?max_age=<s>`` sets its life, ``?cancel`` adds its Cancel button)."""
    if "user" in request.GET:
        return render(request, "testapp/htmx-user.html",
                      {"execution_id": execution_id, "user_pk": request.GET["user"]})
    max_age = float(request.GET["max_age"]) if "max_age" in request.GET else None
    return render(request, "testapp/htmx.html", {"execution_id": execution_id, "max_age": max_age,
                                                 "cancel": "cancel" in request.GET})


def htmx_many_page(request: HttpRequest, ids: str) -> HttpResponse:
    """Progress widgets of the comma-separated ``ids``, all over one stream."""
    return render(request, "testapp/htmx-many.html", {"ids": ids})


#: A strict Content-Security-Policy: scripts and styles from the site's own files only
#: (no inline script or style, no eval), everything fetched from the site only.
STRICT_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
              "img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'")


def htmx_csp_page(request: HttpRequest, ids: str) -> HttpResponse:
    """The widget of one execution (``?user=<pk>`` binds its token), or of the comma-separated
    ``ids`` over one stream, served with :data:`STRICT_CSP`."""
    response = render(request, "testapp/htmx-csp.html", {
        "ids": ids, "many": "," in ids, "user_pk": request.GET.get("user")})
    response["Content-Security-Policy"] = STRICT_CSP
    return response


def htmx4_page(request: HttpRequest, execution_id: str) -> HttpResponse:
    """The HTML stream under htmx 4's built-in ``hx-sse:connect`` (no extension of htmx 2)."""
    return render(request, "testapp/htmx4.html",
                  {"execution_id": execution_id, "user_pk": request.GET.get("user")})


async def fragment_stats(request: HttpRequest) -> JsonResponse:
    """How many HTML fragments this server rendered (the once-per-event rule)."""
    from django_sse_exec.render.html import get_cache

    return JsonResponse(get_cache().stats())
#: Producers started by ``lease_producer``, by execution id.
_producers: dict[str, asyncio.Task] = {}


@csrf_exempt
async def lease_producer(request: HttpRequest) -> JsonResponse:
    """Start a producer task on the server's loop that holds a lease (``ttl``), sends
    ``execution-start`` and ``task-start`` with the bare helpers, then waits forever.

    It has no cleanup: killing it (``lease_producer_kill``) is a producer dying
    without closing its execution.
    """
    from django_sse_exec.execution.leases import ahold_lease

    body = _body(request)
    execution_id = body["execution_id"]
    started = asyncio.Event()

    async def produce() -> None:
        await ahold_lease(execution_id, body.get("ttl"))
        await sse.asend_sse_event(execution_id, "execution-start",
                                  {"executionId": execution_id, "totalTasks": 2, "startTime": 0})
        await sse.asend_sse_event(execution_id, "task-start",
                                  {"taskId": "t1", "taskTitle": "Task one", "progress": 0,
                                   "total": 2})
        started.set()
        await asyncio.Event().wait()

    _producers[execution_id] = asyncio.ensure_future(produce())
    await started.wait()
    return JsonResponse({"ok": True})


@csrf_exempt
async def lease_producer_kill(request: HttpRequest) -> JsonResponse:
    """Kill a producer started by ``lease_producer`` (it runs no cleanup)."""
    _producers.pop(_body(request)["execution_id"]).cancel()
    return JsonResponse({"ok": True})
