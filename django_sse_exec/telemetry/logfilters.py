"""A logging filter that removes stream tokens from log lines written by others.

Stream URLs carry a signed token in ``?token=``; servers' access logs write the
whole URL. The app's own lines never hold a token; for loggers of other code
(uvicorn's ``uvicorn.access``, Django's ``django.request``, a proxy's own app)
add this filter to the handler::

    "filters": {"tokens": {"()": "django_sse_exec.telemetry.logfilters.RedactTokens"}},
    "handlers": {"access": {"class": "logging.StreamHandler", "filters": ["tokens"]}},

It rewrites the record's message and string arguments, replacing every
``token=...`` query value with ``token=[redacted]``.
"""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"([?&;]token=)[^&\s\"']*")
REDACTED = r"\1[redacted]"


def redact(text: str) -> str:
    """``text`` with every ``token=`` query value replaced by ``[redacted]``."""
    return _TOKEN.sub(REDACTED, text) if "token=" in text else text


class RedactTokens(logging.Filter):
    """Replace stream tokens in a record's message and arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v
                           for k, v in record.args.items()}
        return True


__all__ = ["REDACTED", "RedactTokens", "redact"]
