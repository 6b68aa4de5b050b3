"""Exceptions the public API raises, importable without touching Django settings."""


class SSEExecError(Exception):
    """Base class of the app's own errors."""


class ExecutionClosed(SSEExecError):
    """An event was sent to an execution after ``close_sse_connections``."""

    def __init__(self, message: str = "", *, cancel_requested: bool = False) -> None:
        super().__init__(message)
        #: The execution had been asked to cancel before it closed.
        self.cancel_requested = cancel_requested


class ExecutionCancelled(SSEExecError):
    """Raised inside a producer at its next report once someone asked to cancel its execution.

    Let it propagate: the reporter (or the task integration) then ends the
    execution as ``cancelled``. An ``Exception``, not a ``BaseException``, so
    workers (Celery, ``db_worker``) treat it as the task's ending, not their own.
    """

    def __init__(self, execution_id: str, reason: str = "cancel requested") -> None:
        super().__init__(f"execution {execution_id}: {reason}")
        self.execution_id = execution_id
        self.reason = reason


class StoreUnavailable(SSEExecError):
    """The event store (e.g. Redis) could not be reached within the time allowed."""
