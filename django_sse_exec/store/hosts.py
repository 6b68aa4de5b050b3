"""The Redis hosts of the event store, and which one holds each execution.

The store follows the channel layer: with no ``SSE_EXEC["REDIS_URL"]`` it uses
every host of the layer's ``hosts`` list, in the same order, in any of the
forms channels_redis accepts (a URL, a ``(host, port)`` pair, a dict with
``address`` or ``host``/``port``, or a Sentinel dict with ``sentinels`` and
``master_name``). With several hosts, each execution's keys live on the host
the layer uses for the execution's group (:mod:`django_sse_exec.layer.redis.shards`),
so every process makes the same choice with no coordination. With
``REDIS_URL`` the store has that one host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..conf import sse_settings
from ..layer.names import group_name
from ..layer.redis.shards import host_index, kind_of_backend

#: Connection options of a layer's host entry that the store uses too (the store
#: sets its own pool size and timeouts).
PASSED_OPTIONS = ("password", "username", "db", "ssl", "ssl_cert_reqs", "ssl_ca_certs",
                  "ssl_certfile", "ssl_keyfile", "ssl_check_hostname", "client_name")


@dataclass(frozen=True)
class HostSpec:
    """How to reach one Redis: a URL, or a Sentinel-monitored master."""

    url: str = ""
    master_name: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_kwargs: tuple[tuple[str, Any], ...] = ()
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def is_sentinel(self) -> bool:
        return bool(self.master_name)

    def describe(self) -> str:
        """A readable location for error messages (no password)."""
        if self.is_sentinel:
            where = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"Sentinel master {self.master_name!r} (sentinels {where})"
        parts = urlsplit(self.url)
        secret = f"{parts.username or ''}:***@" if parts.password or dict(self.options).get(
            "password") else ""
        return f"{parts.scheme}://{secret}{parts.hostname}:{parts.port or 6379}{parts.path}"


def host_spec(entry: Any) -> HostSpec:
    """The :class:`HostSpec` of one entry of a channels_redis ``hosts`` list."""
    if isinstance(entry, str):
        return HostSpec(url=entry)
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return HostSpec(url=f"redis://{entry[0]}:{int(entry[1])}/0")
    if isinstance(entry, dict):
        options = tuple(sorted((k, v) for k, v in entry.items() if k in PASSED_OPTIONS))
        if "address" in entry:
            return HostSpec(url=str(entry["address"]), options=options)
        if entry.get("master_name") and entry.get("sentinels"):
            return HostSpec(
                master_name=str(entry["master_name"]),
                sentinels=tuple((str(h), int(p)) for h, p in entry["sentinels"]),
                sentinel_kwargs=tuple(sorted((entry.get("sentinel_kwargs") or {}).items())),
                options=options)
        if "host" in entry:
            rest = tuple((k, v) for k, v in options if k != "db")
            return HostSpec(url=f"redis://{entry['host']}:{int(entry.get('port', 6379))}/"
                                f"{int(entry.get('db', 0))}", options=rest)
    raise ImproperlyConfigured(
        f"cannot derive a Redis connection from channel layer host {entry!r}; give it as a "
        "URL, a (host, port) pair, a dict with 'address' or 'host', or a Sentinel dict with "
        "'sentinels' and 'master_name' (or set SSE_EXEC['REDIS_URL'])")


def hosts_setting() -> str:
    """The setting that says where the store's Redis is, as a user writes it."""
    if sse_settings.REDIS_URL:
        return "SSE_EXEC['REDIS_URL']"
    return f"CHANNEL_LAYERS[{sse_settings.CHANNEL_LAYER!r}]['CONFIG']['hosts']"


def layer_config() -> dict[str, Any]:
    """The ``CHANNEL_LAYERS`` entry the app publishes on (``{}`` if none)."""
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    return layers.get(sse_settings.CHANNEL_LAYER, {}) or {}


def layer_hosts() -> list[HostSpec]:
    """The channel layer's hosts, in order (channels_redis's default if none)."""
    hosts = (layer_config().get("CONFIG") or {}).get("hosts") or [("localhost", 6379)]
    if isinstance(hosts, (str, bytes)):
        raise ImproperlyConfigured("the channel layer's 'hosts' must be a list, even of one")
    return [host_spec(entry) for entry in hosts]


def store_hosts() -> list[HostSpec]:
    """``[SSE_EXEC["REDIS_URL"]]`` if set, else the channel layer's hosts."""
    if sse_settings.REDIS_URL:
        return [HostSpec(url=str(sse_settings.REDIS_URL))]
    return layer_hosts()


def layer_redis_url() -> str:
    """The Redis URL of the channel layer's first host (channels_redis's default if none)."""
    host = layer_hosts()[0]
    if host.is_sentinel:
        raise ImproperlyConfigured(
            f"the channel layer's first host is a {host.describe()}: it has no fixed URL")
    return host.url


def redis_url_from_settings() -> str:
    """``SSE_EXEC["REDIS_URL"]``, else the URL of the channel layer's first host."""
    if sse_settings.REDIS_URL:
        return str(sse_settings.REDIS_URL)
    return layer_redis_url()


def shard_rule(ring_size: int) -> Callable[[str], int]:
    """``execution id -> host index`` among ``ring_size`` hosts: the host the channel
    layer uses for the execution's group (see :mod:`django_sse_exec.layer.redis.shards`)."""
    if ring_size == 1:
        return lambda execution_id: 0
    layer = layer_config()
    kind = kind_of_backend(layer.get("BACKEND"))
    prefix = str((layer.get("CONFIG") or {}).get("prefix", "asgi"))
    return lambda execution_id: host_index(kind, prefix, group_name(execution_id), ring_size)
