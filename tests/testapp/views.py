"""Control endpoints that let tests drive a server process through the public API.

With the in-memory layer the only way to reach a server's streams is from inside
that process, so tests POST here. They exist only in the tests' URLconf.
"""

from __future__ import annotations

import asyncio
import json

from django.http import HttpRequest, JsonResponse
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
async def close(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"id": await sse.aclose_sse_connections(_body(request)["execution_id"])})


async def count(request: HttpRequest, execution_id: str) -> JsonResponse:
    return JsonResponse({"count": await sse.aget_sse_client_count(execution_id)})


async def hub_stats(request: HttpRequest) -> JsonResponse:
    """How many streams and groups the server's hub holds (leak checks)."""
    from django_sse_exec.hub import get_hub

    hub = get_hub()
    unsent = [sub.backlog.pending() for sub in hub.subscribers() if sub.backlog is not None]
    return JsonResponse({"streams": hub.local_count(), "groups": hub.group_count(),
                         "tasks": len(asyncio.all_tasks()), "max_unsent": max(unsent, default=0),
                         "measured": len(unsent)})


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


#: Producers started by ``lease_producer``, by execution id.
_producers: dict[str, asyncio.Task] = {}


@csrf_exempt
async def lease_producer(request: HttpRequest) -> JsonResponse:
    """Start a producer task on the server's loop that holds a lease (``ttl``), sends
    ``execution-start`` and ``task-start`` with the bare helpers, then waits forever.

    It has no cleanup: killing it (``lease_producer_kill``) is a producer dying
    without closing its execution.
    """
    from django_sse_exec.leases import ahold_lease

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
