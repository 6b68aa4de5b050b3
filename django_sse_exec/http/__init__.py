"""The HTTP entry points: the async view, the ASGI fast path, the progress view."""
