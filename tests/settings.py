"""Settings for the test process and for the servers the tests start.

Servers are started with environment variables that select the channel layer
(``TEST_LAYER``: memory, redis, pubsub; ``TEST_LAYER_CAPACITY`` and
``TEST_GROUP_EXPIRY`` tune the core Redis layer), Redis (``REDIS_URL``; ``REDIS_URLS``,
comma-separated, for several hosts; ``TEST_SENTINELS``, comma-separated ``host:port``,
with ``TEST_SENTINEL_MASTER`` for a Sentinel-managed master) and overrides of
``SSE_EXEC`` (``SSE_EXEC_JSON``), so one settings module serves every setup.
``TEST_TRACE_FILE`` makes the process record OpenTelemetry spans into that file
(``tests/tracefile.py``), for tests that follow a trace across processes.
"""

import json
import os

from example_project.settings import *  # noqa: F401,F403
from example_project.settings import INSTALLED_APPS

SECRET_KEY = "tests-secret-key-not-for-production"
ROOT_URLCONF = "tests.urls"
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
DEBUG = False
ALLOWED_HOSTS = ["*"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TEST_DB_PATH", ":memory:"),
    }
}
if "TEST_DATABASE_JSON" in os.environ:  # another database for servers that need one (PostgreSQL)
    DATABASES = {"default": json.loads(os.environ["TEST_DATABASE_JSON"])}

_layer = os.environ.get("TEST_LAYER", "memory")
_redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_prefix = os.environ.get("TEST_KEY_PREFIX", "sse_exec")
_capacity = int(os.environ.get("TEST_LAYER_CAPACITY", "10000"))
_host_options = {"socket_timeout": 30, "max_connections": 1000}
if os.environ.get("TEST_SENTINELS"):
    _hosts: list = [{"sentinels": [(h, int(p)) for h, p in (
        s.rsplit(":", 1) for s in os.environ["TEST_SENTINELS"].split(","))],
        "master_name": os.environ.get("TEST_SENTINEL_MASTER", "mymaster"), **_host_options}]
else:
    _hosts = [{"address": url, **_host_options}
              for url in (os.environ.get("REDIS_URLS") or _redis_url).split(",")]

if _layer == "memory":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": _capacity},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": {
                "redis": "channels_redis.core.RedisChannelLayer",
                "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
            }[_layer],
            "CONFIG": {
                "hosts": _hosts,
                "prefix": f"asgi_{_prefix}",
                **({"capacity": _capacity} if _layer == "redis" else {}),
                **({"group_expiry": int(os.environ["TEST_GROUP_EXPIRY"])}
                   if _layer == "redis" and "TEST_GROUP_EXPIRY" in os.environ else {}),
            },
        }
    }

if os.environ.get("TEST_TRACE_FILE"):  # spans of a worker or server, for the test to read
    from tests.tracefile import install

    install(os.environ["TEST_TRACE_FILE"])

if os.environ.get("TEST_DAPHNE_VERSION"):  # play a daphne the slow-client guard was not tested with
    import daphne

    daphne.__version__ = os.environ["TEST_DAPHNE_VERSION"]

# The example project's /metrics is for staff or a configured scraper: the tests'
# scrapes come from this address (TEST_METRICS_ADDRESSES="" tries the default, staff only).
DEMO_METRICS_ADDRESSES = [a for a in os.environ.get("TEST_METRICS_ADDRESSES", "127.0.0.1").split(",")
                          if a]
# Tests start many executions from one address: the demo's rate limit only where asked.
DEMO_STARTS_PER_MINUTE = int(os.environ.get("DEMO_STARTS_PER_MINUTE", "100000"))

# No retry jitter unless a test asks for it, so the preamble is predictable.
SSE_EXEC = {"KEY_PREFIX": _prefix, "RETRY_JITTER_MS": 0,
            **json.loads(os.environ.get("SSE_EXEC_JSON", "{}"))}

_console: dict = {"class": "logging.StreamHandler"}
_loggers: dict = {
    "django_sse_exec": {"handlers": ["console"], "level": "INFO"},
    "django.request": {"handlers": ["console"], "level": "ERROR"},
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": _console},
    "loggers": _loggers,
}
if os.environ.get("TEST_LOG_RECORDS"):
    # One line per record, naming its level and logger, every logger of the process
    # (third parties' too): for tests that count what a process logs.
    _console["formatter"] = "record"
    for _logger in _loggers.values():
        _logger["propagate"] = False
    LOGGING.update(formatters={"record": {"format": "RECORD %(levelname)s %(name)s: %(message)s"}},
                   root={"handlers": ["console"], "level": "WARNING"})
