"""Settings of every Django-based system in the benchmark (and of the driver).

The test settings already select Redis (``TEST_LAYER=redis``), a key prefix
(``TEST_KEY_PREFIX``) and the control endpoints; the benchmark adds the
systems it compares against: django-eventstream in its Redis mode and a naive
one-channel-per-connection view on channels' Redis pub/sub layer.
"""

import os
from urllib.parse import urlsplit

os.environ.setdefault("TEST_LAYER", "redis")

from tests.settings import *  # noqa: E402,F401,F403
from tests.settings import CHANNEL_LAYERS, INSTALLED_APPS, SSE_EXEC, _prefix, _redis_url  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "django_eventstream"]
ROOT_URLCONF = "bench.urls"

_hosts = [{"address": _redis_url, "socket_timeout": 30, "max_connections": 1000}]
CHANNEL_LAYERS = {
    **CHANNEL_LAYERS,
    # The app runs on either channels_redis layer (SSE_EXEC["CHANNEL_LAYER"] picks
    # the alias, from BENCH_SSE_LAYER); both share the tests' prefix.
    "pubsub": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": _hosts, "prefix": f"asgi_{_prefix}"},
    },
    "core": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": _hosts, "prefix": f"asgi_{_prefix}", "capacity": 10_000},
    },
    # The naive view opens one channel per connection; the pub/sub layer is the
    # one of channels_redis that copes with that best.
    "naive": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [_redis_url], "prefix": f"naive_{_prefix}"},
    },
}

# django-eventstream's multi-process mode: every process subscribes to one
# Redis pub/sub channel ("events_channel"). Its default channel manager lets
# anyone read any channel, which matches the allow-any naive view.
_redis = urlsplit(_redis_url)
EVENTSTREAM_REDIS = {"host": _redis.hostname, "port": _redis.port or 6379,
                     "db": int(_redis.path.strip("/") or 0)}

SSE_EXEC = {**SSE_EXEC, "KEEPALIVE": 15.0,
            "CHANNEL_LAYER": os.environ.get("BENCH_SSE_LAYER", "pubsub")}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_sse_exec": {"handlers": ["console"], "level": "WARNING"},
                "django.request": {"handlers": ["console"], "level": "ERROR"}},
}
