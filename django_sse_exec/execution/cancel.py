"""Asking an execution to stop, from anywhere: the request, who made it, and the hooks.

A cancel is cooperative. :func:`arequest_cancel` logs
``execution-cancel-requested {executionId, by, at[, requester]}`` (once: a
second request answers the first one's id) and marks the execution in the
store in the same atomic step. From then on every report the producer sends
learns it in its own round trip (no polling): a reporter raises
:class:`~django_sse_exec.exceptions.ExecutionCancelled` at its next report,
the task integrations stop their task there (and do not start the ones still
queued), and the producer ends the execution ``execution-cancelled``, then
``stream-closed``. Hooks added with :func:`add_cancel_hook` run after the
request is logged (say, to tell a system the app knows nothing of), for at most
:data:`HOOK_TIMEOUT` seconds each.

Who asked, without personal data: ``by`` is a role (``"staff"``, ``"user"``,
or ``"link"`` for the holder of a signed cancel URL bound to no user) and
``requester`` an opaque id of the user (a keyed hash of its primary key,
:func:`requester_id`), so a page can say "you cancelled it" by comparing it
with its own user's, and nobody else learns who it was.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.utils.crypto import salted_hmac

from ..api import asend_as
from ..exceptions import ExecutionClosed
from ..runtime.sync import run_sync
from ..store.base import CANCEL
from ..wire import validate_execution_id
from .snapshot import aget_execution_state
from .state import ExecutionState
from .vocabulary import EXECUTION_CANCEL_REQUESTED, now_ms

logger = logging.getLogger("django_sse_exec")

#: The key of the request (at most one per execution).
REQUEST_KEY = "cancel-requested"
#: Roles ``by`` can say.
ROLES = ("staff", "user", "link")
#: Seconds the request waits for each hook (a hook stuck on a network call is left running).
HOOK_TIMEOUT = 5.0

#: ``hook(execution_id, state)`` after a request is logged; sync or async.
CancelHook = Callable[[str, ExecutionState], Any]
_hooks: list[CancelHook] = []


def add_cancel_hook(hook: CancelHook) -> None:
    """Run ``hook(execution_id, state)`` after each cancel request is logged (once, however
    often added). ``state`` is the execution's state before the request. A sync hook runs
    in a worker thread; a failing hook is logged and does not undo the request."""
    if hook not in _hooks:
        _hooks.append(hook)


def requester_id(user: Any) -> str | None:
    """An opaque, stable id of ``user`` (or a primary key) for ``requester``; None for nobody."""
    pk = getattr(user, "pk", user)
    if pk is None or getattr(user, "is_anonymous", False):
        return None
    return salted_hmac("django_sse_exec.cancel.requester", str(pk)).hexdigest()[:16]


def role_of(user: Any) -> str:
    """``"staff"``, ``"user"`` (logged in) or ``"link"`` (anyone else holding the URL)."""
    if user is not None and getattr(user, "is_authenticated", False):
        return "staff" if getattr(user, "is_staff", False) else "user"
    return "link"


async def arequest_cancel(execution_id: str, *, by: str = "user",
                          requester: str | None = None) -> int:
    """Ask the execution's producer to stop; returns the request's event id.

    ``by`` is one of :data:`ROLES` and ``requester`` an opaque id
    (:func:`requester_id`), never a name or an address. Requesting again is
    harmless (the first request's id is returned, nothing is sent). An
    execution that was not started yet is marked too, so its producer ends it
    as soon as it starts. Raises :class:`~django_sse_exec.exceptions.ExecutionClosed`
    when the execution has already ended.
    """
    validate_execution_id(execution_id)
    if by not in ROLES:
        raise ValueError(f"by must be one of {ROLES}, not {by!r}")
    state = await aget_execution_state(execution_id)
    if state.finished or state.closed:
        raise ExecutionClosed(f"execution {execution_id!r} has already ended",
                              cancel_requested=state.cancel_requested)
    data: dict[str, Any] = {"executionId": execution_id, "by": by, "at": now_ms()}
    if requester:
        data["requester"] = str(requester)[:64]
    appended = await asend_as(execution_id, EXECUTION_CANCEL_REQUESTED, data, key=REQUEST_KEY,
                              kind=CANCEL)
    if not appended.repeated:
        for hook in list(_hooks):
            call = hook if inspect.iscoroutinefunction(hook) else sync_to_async(
                hook, thread_sensitive=False)
            try:
                await asyncio.wait_for(call(execution_id, state), HOOK_TIMEOUT)
            except Exception:
                logger.warning("execution %s: cancel hook %r failed", execution_id, hook,
                               exc_info=True)
    return int(appended)


def request_cancel(execution_id: str, *, by: str = "user", requester: str | None = None) -> int:
    """Sync twin of :func:`arequest_cancel` (a sync view, a shell, a management command)."""
    return run_sync("request_cancel", lambda: arequest_cancel(execution_id, by=by,
                                                              requester=requester))


__all__ = ["HOOK_TIMEOUT", "REQUEST_KEY", "ROLES", "add_cancel_hook", "arequest_cancel", "request_cancel",
           "requester_id", "role_of"]
