"""Exceptions the public API raises, importable without touching Django settings."""


class SSEExecError(Exception):
    """Base class of the app's own errors."""


class ExecutionClosed(SSEExecError):
    """An event was sent to an execution after ``close_sse_connections``."""


class StoreUnavailable(SSEExecError):
    """The event store (e.g. Redis) could not be reached within the time allowed."""
