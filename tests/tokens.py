"""Tokens the public API refuses to mint, for tests that need them (an expired one)."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from django.core import signing
from django.urls import reverse

from django_sse_exec.auth.policies import SALT


def expired_stream_url(execution_id: str) -> str:
    """A stream URL whose token, validly signed, expired a second ago."""
    token = signing.dumps({"e": execution_id, "x": int(time.time()) - 1}, salt=SALT, compress=True)
    path = reverse("django_sse_exec:stream", args=[execution_id])
    return f"{path}?{urlencode({'token': token})}"
