"""Stream the progress of long-running executions to browsers over Server-Sent Events.

Public API (each sync helper has an ``a``-prefixed async twin)::

    send_sse_event(execution_id, event, data) -> int
    register_sse_client(execution_id, channel_name)
    unregister_sse_client(execution_id, channel_name)
    get_sse_client_count(execution_id) -> int
    close_sse_connections(execution_id) -> int
    send_sse_event(execution_id, event, data, key="step-3")   # at most once per key
    stream_url(execution_id, *, user=None, max_age=None, format="json") -> str
    cancel_url(execution_id, *, user=None, max_age=None) -> str   # POST: ask it to stop
    request_cancel(execution_id) -> int    # the same from code (a view, the admin, a shell)
    multi_stream_url(execution_ids, *, user=None, max_age=None) -> str   # many on one stream
    add_to_feed(feed, execution_id) -> int    # feeds: "user:42" follows its executions
    feed_stream_url(feed, *, user=None, max_age=None) -> str
    get_execution_state(execution_id) -> ExecutionState   # rebuilt from the log
    ExecutionReporter(execution_id, ...)   # progress in the orchestrator's vocabulary
    hold_lease(execution_id) -> Lease      # bare helpers: end as "lost" if this process dies
    reap_lost_executions() -> list[str]    # end executions whose lease expired (any process)
    check_stalls() -> list[str]            # announce executions silent for STALL_AFTER (any process)
"""

from .api import (
    aclose_sse_connections,
    aget_sse_client_count,
    aregister_sse_client,
    asend_sse_event,
    aunregister_sse_client,
    close_sse_connections,
    get_sse_client_count,
    register_sse_client,
    send_sse_event,
    unregister_sse_client,
)
from .auth.cancel import cancel_url
from .auth.stream_urls import feed_stream_url, multi_stream_url, stream_url
from .exceptions import ExecutionCancelled, ExecutionClosed, SSEExecError, StoreUnavailable
from .execution.cancel import arequest_cancel, request_cancel
from .execution.leases import Lease, ahold_lease, areap_lost_executions, hold_lease, reap_lost_executions
from .execution.reporter import ExecutionReporter
from .execution.snapshot import aget_execution_state, get_execution_state
from .execution.stalls import acheck_stalls, check_stalls
from .execution.state import ExecutionState, TaskState
from .sending.feeds import aadd_to_feed, add_to_feed

__version__ = "0.1.0"

__all__ = [
    "ExecutionCancelled",
    "ExecutionClosed",
    "ExecutionReporter",
    "ExecutionState",
    "Lease",
    "SSEExecError",
    "StoreUnavailable",
    "TaskState",
    "aadd_to_feed",
    "acheck_stalls",
    "aclose_sse_connections",
    "aget_execution_state",
    "aget_sse_client_count",
    "add_to_feed",
    "ahold_lease",
    "areap_lost_executions",
    "arequest_cancel",
    "aregister_sse_client",
    "asend_sse_event",
    "aunregister_sse_client",
    "cancel_url",
    "check_stalls",
    "close_sse_connections",
    "feed_stream_url",
    "get_execution_state",
    "get_sse_client_count",
    "hold_lease",
    "multi_stream_url",
    "reap_lost_executions",
    "register_sse_client",
    "request_cancel",
    "send_sse_event",
    "stream_url",
    "unregister_sse_client",
]
