"""Settings for django_sse_exec, read from the single ``SSE_EXEC`` dict.

Every key has a documented default here; ``settings.SSE_EXEC`` only needs the keys
a project wants to change. Values are read on every access, so tests can use
``override_settings(SSE_EXEC={...})``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings

DEFAULTS: dict[str, Any] = {
    # Where event logs and stream membership live: "auto" (Redis when the channel
    # layer is channels_redis, memory otherwise), "memory", "redis", or a dotted
    # path to a Store subclass.
    "STORE": "auto",
    # Redis URL for the Redis store; None uses the channel layer's hosts (all of
    # them: each execution's keys on the host the layer uses for its group).
    "REDIS_URL": None,
    # With replicas (Sentinel): a send or close returns only once this many
    # replicas have the event (Redis WAIT in the same round trip), or after
    # REDIS_WAIT_TIMEOUT seconds (then a warning: a failover could lose it).
    # 0: no waiting (a failover can lose the last events sent before it).
    "REDIS_WAIT_REPLICAS": 0,
    "REDIS_WAIT_TIMEOUT": 1.0,
    # Prefix of every Redis key and channel-layer group the app uses.
    "KEY_PREFIX": "sse_exec",
    # Channel layer alias. With no CHANNEL_LAYERS configured at all, a private
    # in-memory layer is used (single process).
    "CHANNEL_LAYER": "default",
    # Events retained per execution for replay (older ones are trimmed). At full
    # sync-send speed (thousands of events/s) 1,000 events were under a second of
    # history: a stream or hub held up for a second was reset. HISTORY_MAX_BYTES
    # bounds what large events cost.
    "HISTORY_MAX_EVENTS": 10_000,
    # Bytes of event data retained per execution (older events are trimmed; the
    # newest is always kept).
    "HISTORY_MAX_BYTES": 16 * 1024 * 1024,
    # A replay is read and sent one page at a time, so a stream holds at most one
    # page of history in memory: at most this many events ...
    "REPLAY_PAGE_EVENTS": 200,
    # ... and about this many bytes (at least one event).
    "REPLAY_PAGE_BYTES": 256 * 1024,
    # Seconds an open execution's log is kept after its last event.
    "HISTORY_TTL": 24 * 3600,
    # Seconds a closed execution's log is kept (for late replays and the 204 rule).
    "CLOSED_TTL": 3600,
    # Executions one multi stream (multi_stream_url) or feed stream may carry.
    "MULTI_STREAM_MAX": 100,
    # Seconds of silence after which a stream sends ": keepalive".
    "KEEPALIVE": 15.0,
    # Milliseconds sent as "retry:" at stream start (EventSource reconnect delay).
    "RETRY_MS": 2000,
    # Events buffered per stream before it stops buffering and catches up from the log.
    "CLIENT_BUFFER": 1000,
    # Seconds a signed stream token stays valid.
    "TOKEN_MAX_AGE": 3600,
    # Largest max_age a token may be minted with (stream_url raises above it);
    # tokens claiming a later expiry are refused. URL tokens end up in logs.
    "TOKEN_MAX_AGE_LIMIT": 24 * 3600,
    # Largest accepted event payload, in bytes of encoded JSON.
    "MAX_EVENT_BYTES": 64 * 1024,
    # Dotted path to the authorisation callable ``(request, execution_id) -> bool``.
    "AUTHORIZE": "django_sse_exec.auth.signed_token",
    # Database connections stream authorisation may hold at once, per process
    # (loading the user, or any custom policy); further connects wait their turn.
    # Keep (processes x this) below the database's connection limit. None: no limit.
    "AUTHORIZE_DB_CONNECTIONS": 8,
    # Seconds between membership heartbeats; an entry expires after 3 missed beats.
    "HEARTBEAT": 10.0,
    # Seconds between the hub's checks of the log for events its channel dropped.
    "REPAIR_INTERVAL": 1.0,
    # Seconds between re-joins of channel-layer groups (they expire after group_expiry).
    "GROUP_REFRESH": 3600.0,
    # Up to this many milliseconds, chosen at random per stream, are added to every
    # "retry:" the server sends, so clients dropped together do not return together.
    "RETRY_JITTER_MS": 1000,
    # Bytes of a stream the server may hold unsent for a slow client (and about
    # the most a stream buffers from the hub before reading the log instead); past it the
    # stream pauses (its writes block) until the client reads. For servers without
    # backpressure whose write buffer can be measured (daphne); uvicorn applies its own.
    "CLIENT_BUFFER_BYTES": 1024 * 1024,
    # Seconds a stream may wait for its client to take bytes before the connection
    # is dropped (the client resumes with Last-Event-ID). A stream whose writes are
    # blocked and that falls CLIENT_BUFFER events behind is dropped at once.
    "WRITE_TIMEOUT": 30.0,
    # Seconds after which a stream is ended with a retry hint so the client
    # reconnects (spreads load after deploys); None: never. Keep it below
    # TOKEN_MAX_AGE or reconnects with an expired token get 403.
    "MAX_STREAM_LIFETIME": None,
    # Fraction of MAX_STREAM_LIFETIME by which each stream's lifetime is shortened
    # at random, so streams opened together are not rotated together.
    "MAX_STREAM_LIFETIME_JITTER": 0.2,
    # What ExecutionReporter and the Celery integration publish about an exception
    # they caught: "auto" (its message only with DEBUG on; else its type and a
    # generic message), "type", "message", or a dotted path to (exc) -> str.
    "ERROR_DETAIL": "auto",
    # Streams one logged-in user may hold open in one process; over it a connect
    # gets 429 with Retry-After. None: no cap.
    "MAX_STREAMS_PER_USER": None,
    # Streams one client address may hold open in one process (the address the
    # server reports: behind a proxy, the proxy's unless it forwards it). None: no cap.
    "MAX_STREAMS_PER_ADDRESS": None,
    # Seconds sent as Retry-After with a 429 from the caps above.
    "STREAM_CAP_RETRY_AFTER": 10,
    # On SIGTERM/SIGINT, seconds at most to end every stream (with a retry hint)
    # before the server's own shutdown proceeds; 0 leaves signals alone.
    "SHUTDOWN_GRACE": 1.5,
    # Seconds a producer's lease on its execution lasts without renewal (renewed
    # every third of it); an execution whose lease expired is ended as "lost".
    "LEASE_TTL": 30.0,
    # Seconds between a web process's checks for expired leases.
    "LEASE_CHECK": 5.0,
    # Seconds a process that claimed an expired lease has to end the execution
    # before another process may claim it again.
    "LEASE_CLAIM_GRACE": 30.0,
}


class Settings:
    """Attribute access to ``SSE_EXEC`` merged over :data:`DEFAULTS`."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"SSE_EXEC has no setting {name!r}")
        user = getattr(django_settings, "SSE_EXEC", None) or {}
        return user.get(name, DEFAULTS[name])

    def unknown_keys(self) -> list[str]:
        """Keys in ``settings.SSE_EXEC`` that the app does not know (likely typos)."""
        user = getattr(django_settings, "SSE_EXEC", None) or {}
        return sorted(set(user) - set(DEFAULTS))


sse_settings = Settings()
