"""Settings of the example project.

With no ``REDIS_URL`` in the environment everything runs in one process on
channels' in-memory layer (``make demo``). With ``REDIS_URL`` set, the channel
layer is channels_redis's pub/sub layer and the app's event store follows it to the same Redis,
so Celery workers and several web processes share every execution. ``REDIS_URLS``
(comma-separated) gives several Redis hosts instead: the layer shards groups over
them and the event store keeps each execution on its group's host.
"""

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# DEBUG only when asked for: DJANGO_DEBUG=1.
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"

# The key that signs sessions and stream tokens: DJANGO_SECRET_KEY, else the
# git-ignored file `make demo` generates, else a random one for this process
# only (then tokens do not work across processes). Never a published value.
SECRET_KEY_FILE = BASE_DIR / "example_project" / ".secret_key"
#: The value earlier versions of this file fell back to: public, so refused.
PUBLISHED_SECRET_KEYS = {"example-project-insecure-key-change-me"}
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or (
    SECRET_KEY_FILE.read_text().strip() if SECRET_KEY_FILE.exists() else ""
) or secrets.token_urlsafe(50)
if SECRET_KEY in PUBLISHED_SECRET_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is the example project's published key: anyone can forge stream "
        "tokens and sessions with it. Generate your own (python -c 'import secrets; "
        "print(secrets.token_urlsafe(50))').")

ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

# The debug page (DEBUG=1) masks settings whose names match this, besides
# Django's own API/AUTH/TOKEN/KEY/SECRET/PASS/SIGNATURE: Redis and broker URLs
# and channel-layer hosts carry passwords.
DEFAULT_EXCEPTION_REPORTER_FILTER = "example_project.reporting.SafeSettingsFilter"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_sse_exec",
    "example_project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.gzip.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "example_project.urls"
ASGI_APPLICATION = "example_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH", str(BASE_DIR / "db.sqlite3")),
    }
}

STATIC_URL = "/static/"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URLS = [url.strip() for url in os.environ.get("REDIS_URLS", "").split(",") if url.strip()]
REDIS_URL = os.environ.get("REDIS_URL") or (REDIS_URLS[0] if REDIS_URLS else None)

if REDIS_URL:
    # The pub/sub layer, as the docs recommend (docs/howto/redis.md); CHANNEL_LAYER_BACKEND=
    # channels_redis.core.RedisChannelLayer tries the core layer instead.
    _backend = os.environ.get("CHANNEL_LAYER_BACKEND", "channels_redis.pubsub.RedisPubSubChannelLayer")
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": _backend,
            "CONFIG": {
                # Dict hosts let us set socket_timeout above the core layer's 5 s idle
                # blocking pop (redis-py 8 otherwise times out idle receives).
                "hosts": [{"address": url, "socket_timeout": 30, "max_connections": 1000}
                          for url in (REDIS_URLS or [REDIS_URL])],
                **({"capacity": 10_000} if _backend.endswith(".core.RedisChannelLayer") else {}),
            },
        }
    }
    # The first host doubles as Celery's broker unless CELERY_BROKER_URL says otherwise.
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 10_000},
        }
    }

# Who may read /metrics besides logged-in staff users (the metrics are operational
# data; example_project/metrics_access.py): a scraper that sends
# "Authorization: Bearer <DEMO_METRICS_TOKEN>", or one whose address, as the server
# sees it, is in DEMO_METRICS_ADDRESSES (comma-separated in the environment). Both
# empty by default: staff only. Behind a proxy every client has the proxy's address
# unless the server takes it from X-Forwarded-For (daphne --proxy-headers).
DEMO_METRICS_TOKEN = os.environ.get("DEMO_METRICS_TOKEN", "")
DEMO_METRICS_ADDRESSES = [a.strip() for a in os.environ.get("DEMO_METRICS_ADDRESSES", "").split(",")
                          if a.strip()]

# Executions one visitor (one client address) may start per minute, on either
# dashboard; past it, 429 with Retry-After (example_project/demo/limits.py). Counted
# per web process, like DEMO_MAX_RUNNING (the executions running at once).
DEMO_STARTS_PER_MINUTE = int(os.environ.get("DEMO_STARTS_PER_MINUTE", "10"))

SSE_EXEC: dict[str, object] = {
    "KEEPALIVE": float(os.environ.get("SSE_KEEPALIVE", "15")),
    # An execution silent this long is shown as stalled (the demo's "stall" option).
    "STALL_AFTER": float(os.environ.get("SSE_STALL_AFTER", "5")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_sse_exec": {"handlers": ["console"], "level": "INFO"}},
}
