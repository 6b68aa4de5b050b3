"""The admin page of live and recently closed executions, read from the event store.

Staff with the app's ``django_sse_exec.view_executions`` permission see, on the
admin index under "SSE execution streams", a paged and searchable list of the
executions the store holds (id, last id, viewers across processes, open,
stalled or closed, age, last event, lease) and a detail view with the last events; those
with ``django_sse_exec.close_executions`` can also close one (every stream gets
``stream-closed``). Nothing is read from or written to the database: the model
is unmanaged and only carries the permissions.

Paging follows the store's cursor (SCAN on Redis), so a page costs the same
with 10 or 10,000 executions; pages are in no particular order (each page is
sorted: open executions first, most recently active first).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from .api import close_sse_connections
from .execution.vocabulary import EXECUTION_STALLED
from .models import Execution
from .runtime.sync import run_sync
from .store import get_store
from .store.base import ExecutionSummary
from .wire import is_valid_execution_id

VIEW_PERMISSION = "django_sse_exec.view_executions"
CLOSE_PERMISSION = "django_sse_exec.close_executions"
#: Executions per page.
PAGE_SIZE = 50
#: Events shown on the detail view.
RECENT_EVENTS = 20
#: Characters of an event's data shown on the detail view.
DATA_CHARS = 2000


def state_label(summary: ExecutionSummary) -> str:
    """``closed``, ``stalled`` (its last event is the stall notice: no report since), or ``open``."""
    if summary.closed:
        return "closed"
    return "stalled" if summary.last_event == EXECUTION_STALLED else "open"


def row(summary: ExecutionSummary, now_ms: int) -> dict[str, Any]:
    """What a template shows of one execution (age from ``execution-start``'s startTime)."""
    age = None
    if summary.start_data:
        try:
            start = json.loads(summary.start_data).get("startTime")
            if isinstance(start, (int, float)):
                age = max(0.0, (now_ms - start) / 1000)
        except (ValueError, AttributeError):
            pass
    return {"s": summary, "age": age, "state": state_label(summary)}


def search_term(value: str | None) -> str:
    """The search box's text reduced to characters an execution id can have."""
    return re.sub(r"[^A-Za-z0-9._-]", "", value or "")[:64]


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    """List, detail and close, served from the store (no queryset is ever built)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(VIEW_PERMISSION)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(VIEW_PERMISSION)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("", view(self.list_view), name=f"{name}_changelist"),
            path("<str:execution_id>/", view(self.detail_view), name=f"{name}_change"),
            path("<str:execution_id>/close/", view(self.close_view), name=f"{name}_close"),
        ]

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "title": title, "opts": self.opts,
                "app_label": self.opts.app_label, **extra}

    def _require(self, request: HttpRequest, permission: str) -> None:
        if not request.user.has_perm(permission):
            raise PermissionDenied

    def list_view(self, request: HttpRequest) -> HttpResponse:
        """A page of executions, optionally filtered by an id substring (``?q=``)."""
        self._require(request, VIEW_PERMISSION)
        query = search_term(request.GET.get("q"))
        cursor = request.GET.get("cursor", "0")
        cursor = cursor if cursor.isdigit() else "0"
        started = time.perf_counter()
        summaries, following = run_sync("list_executions", get_store().list_executions,
                                        cursor, PAGE_SIZE, query)
        summaries.sort(key=lambda s: (s.closed, s.idle if s.idle is not None else 1e18))
        now_ms = int(time.time() * 1000)
        return TemplateResponse(request, "django_sse_exec/admin/list.html", self._context(
            request, "Live executions", rows=[row(s, now_ms) for s in summaries], query=query,
            next_cursor=None if following == "0" else following, first_page=cursor == "0",
            read_ms=(time.perf_counter() - started) * 1000))

    def _summary(self, execution_id: str) -> ExecutionSummary:
        if not is_valid_execution_id(execution_id):
            raise Http404("no such execution")
        summary = run_sync("describe_execution", get_store().describe_execution, execution_id)
        if summary is None:
            raise Http404("the store does not hold this execution")
        return summary

    def detail_view(self, request: HttpRequest, execution_id: str) -> HttpResponse:
        """One execution and its last events."""
        self._require(request, VIEW_PERMISSION)
        summary = self._summary(execution_id)
        log = run_sync("read", get_store().read, execution_id,
                       max(0, summary.last_id - RECENT_EVENTS))
        events = [{"id": e.id, "event": e.event, "data": e.data[:DATA_CHARS],
                   "cut": len(e.data) > DATA_CHARS} for e in reversed(log.events)]
        return TemplateResponse(request, "django_sse_exec/admin/detail.html", self._context(
            request, f"Execution {execution_id}", row=row(summary, int(time.time() * 1000)),
            events=events, can_close=not summary.closed and request.user.has_perm(
                CLOSE_PERMISSION)))

    def close_view(self, request: HttpRequest, execution_id: str) -> HttpResponse:
        """POST: close the execution (every stream gets ``stream-closed``)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._require(request, CLOSE_PERMISSION)
        summary = self._summary(execution_id)
        if summary.closed:
            messages.info(request, f"Execution {execution_id} was already closed.")
        else:
            event_id = close_sse_connections(execution_id)
            messages.success(request, f"Execution {execution_id} closed: stream-closed is "
                                      f"event {event_id}.")
        return HttpResponseRedirect(reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[execution_id],
            current_app=self.admin_site.name))
