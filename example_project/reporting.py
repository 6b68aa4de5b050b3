"""What the debug page (``DEBUG=1``) may show of the settings.

Django masks settings whose names contain API, AUTH, TOKEN, KEY, SECRET, PASS or
SIGNATURE. This project's connection settings carry passwords under other names
(``REDIS_URL``, ``CELERY_BROKER_URL``, the channel layer's ``hosts``), so they
are masked too — copy this filter along with the settings.
"""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter


class SafeSettingsFilter(SafeExceptionReporterFilter):
    """Django's filter, also hiding URLs, Redis, broker, host and database settings."""

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE"
        "|REDIS|URL|BROKER|HOST|LOCATION|DATABASE|DSN",
        flags=re.IGNORECASE,
    )
