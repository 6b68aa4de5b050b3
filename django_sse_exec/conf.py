"""Settings for django_sse_exec, read from the single ``SSE_EXEC`` dict.

Every key has a spec in :data:`SETTINGS`: its default, the values it accepts, and
the paragraph the documentation's settings reference prints (the reference is
generated from this file, so it cannot drift from it). ``settings.SSE_EXEC`` only
needs the keys a project wants to change.

``sse_settings.NAME`` is read on hot paths (every stream, every send), so values
are merged and validated once per change of ``SSE_EXEC`` (Django's
``setting_changed`` signal, which ``override_settings`` sends) and then read as
plain attributes. Reading a key whose value is invalid raises
``ImproperlyConfigured`` naming the key, the value and the expected form, so no
stream runs with it; system check ``E016`` (or the key's dedicated check) reports
the same before the server starts. ``given_settings`` reads values unvalidated,
for the checks: while a value is invalid, the other checks (which read settings
through the app) do not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from .setting_types import (
    CHECK_ID,
    Setting,
    choice_or_path,
    flag_or_prefixes,
    fraction,
    redis_url,
    seconds,
    spec,
    text,
    whole,
)

SETTINGS: dict[str, Setting] = {
    "STORE": spec("auto", choice_or_path("auto", "memory", "redis"), """
        Where event logs and stream membership live: `"redis"`, `"memory"` (one process
        only), or the dotted path of a `Store` subclass. `"auto"` picks Redis when the
        channel layer is channels_redis, memory otherwise."""),
    "REDIS_URL": spec(None, redis_url(), """
        One Redis for the event store. `None` uses the channel layer's hosts, all of
        them: each execution's keys live on the host the layer uses for its group."""),
    "REDIS_WAIT_REPLICAS": spec(0, whole(0), """
        With replicas (Sentinel): a send or close returns only once every replica of
        the master, and at least this many, has the event (Redis `WAIT` in the same
        round trip). `0`: no waiting, and a failover can lose the last events sent
        before it.""", "django_sse_exec.E015"),
    "REDIS_WAIT_TIMEOUT": spec(1.0, seconds(), """
        Seconds `WAIT` may take; past it the send returns anyway and a warning is
        logged (that event is then as safe as without `WAIT`).""", "django_sse_exec.E015"),
    "KEY_PREFIX": spec("sse_exec", text(r"[A-Za-z0-9_.-]{1,30}", "1-30 of A-Z a-z 0-9 _ . -"), """
        Prefix of every Redis key and channel-layer group the app uses. Give each
        project sharing a Redis its own."""),
    "CHANNEL_LAYER": spec("default", text(r"\S+", "a channel layer alias (str)"), """
        Alias of the channel layer in `CHANNEL_LAYERS`. With no `CHANNEL_LAYERS`
        configured at all, a private in-memory layer is used (one process)."""),
    "HISTORY_MAX_EVENTS": spec(10_000, whole(1, unit="events"), """
        Events retained per execution for replay; older ones are trimmed. At full
        sync-send speed (thousands of events a second) 1,000 events were under a
        second of history, and a stream or hub held up for a second was reset."""),
    "HISTORY_MAX_BYTES": spec(16 * 1024 * 1024, whole(1, unit="bytes"), """
        Bytes of event data retained per execution; older events are trimmed, the
        newest is always kept."""),
    "REPLAY_PAGE_EVENTS": spec(200, whole(1, unit="events"), """
        A replay is read and written one page at a time, so a stream holds at most
        one page of history in memory: at most this many events a page ..."""),
    "REPLAY_PAGE_BYTES": spec(256 * 1024, whole(1, unit="bytes"), """
        ... and about this many bytes (at least one event)."""),
    "HISTORY_TTL": spec(24 * 3600, seconds(), """
        Seconds an open execution's log is kept after its last event."""),
    "CLOSED_TTL": spec(3600, seconds(), """
        Seconds a closed execution's log is kept, for late replays and the 204 that
        tells a reconnecting client it has everything."""),
    "MULTI_STREAM_MAX": spec(100, whole(1, 1000), """
        Executions one stream of many (`multi_stream_url`) or one feed's stream
        carries. The cursor sent back in `Last-Event-ID` grows by about six bytes per
        execution, and proxies cap headers at 4-8 KB.""", "django_sse_exec.E012"),
    "KEEPALIVE": spec(15.0, seconds(), """
        Seconds of silence after which a stream sends `: keepalive`. Every read or
        idle timeout between the browser and the server (nginx `proxy_read_timeout`,
        a load balancer's idle timeout) must be longer."""),
    "RETRY_MS": spec(2000, whole(0, unit="milliseconds"), """
        Milliseconds sent as `retry:` at stream start: the reconnect delay of
        `EventSource`."""),
    "RETRY_JITTER_MS": spec(1000, whole(0, unit="milliseconds"), """
        Up to this many milliseconds, chosen at random per stream, are added to every
        `retry:` the server sends, so clients dropped together do not return
        together."""),
    "CLIENT_BUFFER": spec(1000, whole(1, unit="events"), """
        Events buffered per stream before it stops buffering and catches up from the
        log instead. A stream this far behind while its writes are blocked is
        dropped (the client resumes with `Last-Event-ID`)."""),
    "CLIENT_BUFFER_BYTES": spec(1024 * 1024, whole(1, unit="bytes"), """
        Bytes of a stream the server may hold unsent for a slow client, and about the
        most a stream buffers from the hub before reading the log instead; past it the
        stream pauses until the client reads. For servers without backpressure whose
        write buffer can be measured (daphne); uvicorn applies its own."""),
    "WRITE_TIMEOUT": spec(30.0, seconds(), """
        Seconds a client may take no bytes while some are waiting before its
        connection is dropped (the client resumes with `Last-Event-ID`)."""),
    "TOKEN_MAX_AGE": spec(3600, seconds(), """
        Seconds a signed stream token stays valid; reconnects keep working until then.
        Tokens travel in URLs and end up in access logs: keep them short-lived.""",
                          "django_sse_exec.E004"),
    "TOKEN_MAX_AGE_LIMIT": spec(24 * 3600, seconds(), """
        Largest `max_age` a token may be minted with (`stream_url` raises above it);
        tokens claiming a later expiry are refused."""),
    "TOKEN_RENEW_BEFORE": spec(None, seconds(optional=True), """
        Seconds before a stream's token expires at which the stream re-runs its
        authorisation and sends a fresh token (`stream-token-renewed`); `None`: a
        quarter of the token's life. At most half the token's life is used. A stream
        refused then gets `stream-token-expired` and ends."""),
    "MAX_EVENT_BYTES": spec(64 * 1024, whole(1, unit="bytes"), """
        Largest accepted event payload, in bytes of encoded JSON; a larger one raises
        `ValueError` at the call site."""),
    "AUTHORIZE": spec("django_sse_exec.auth.signed_token", choice_or_path(call=True), """
        Who may read a stream: the dotted path of (or the) callable
        `(request, execution_id) -> bool`, sync or async. Built in:
        `django_sse_exec.auth.signed_token` (the default), `authenticated_user`,
        `staff_only`, and `allow_any` (development only).""", "django_sse_exec.E003"),
    "AUTHORIZE_DB_CONNECTIONS": spec(8, whole(1, optional=True, unit="connections"), """
        Database connections stream authorisation may hold at once per process
        (loading the user, or a custom policy); further connects wait their turn.
        Keep processes × this below the database's connection limit. `None`: no
        limit.""", "django_sse_exec.E011"),
    "HEARTBEAT": spec(10.0, seconds(), """
        Seconds between membership heartbeats; an open stream's entry expires after
        three missed beats, so `get_sse_client_count` is right again within
        `3 × HEARTBEAT` after a process dies."""),
    "REPAIR_INTERVAL": spec(1.0, seconds(), """
        Seconds between the hub's checks of the log for events its channel
        dropped (and of streams that are too slow, or past their lifetime)."""),
    "GROUP_REFRESH": spec(3600.0, seconds(), """
        Seconds between re-joins of channel-layer groups, which expire after the
        layer's `group_expiry`."""),
    "MAX_STREAM_LIFETIME": spec(None, seconds(optional=True), """
        Seconds after which a stream is ended with a retry hint so the client
        reconnects (spreads load after deploys); `None`: never. The client
        reconnects with its renewed token (`TOKEN_RENEW_BEFORE`)."""),
    "MAX_STREAM_LIFETIME_JITTER": spec(0.2, fraction(), """
        Fraction of `MAX_STREAM_LIFETIME` by which each stream's lifetime is shortened
        at random, so streams opened together are not rotated together."""),
    "ERROR_DETAIL": spec("auto", choice_or_path("auto", "type", "message", call=True), """
        What `ExecutionReporter` and the Celery integration publish about an
        exception they caught: `"auto"` (its message only with `DEBUG` on, else its
        type and a generic message), `"type"`, `"message"`, or the dotted path of (or
        the) callable `(exception) -> str`.""", "django_sse_exec.E013"),
    "FOLLOW_TASKS": spec(False, flag_or_prefixes(), """
        Tasks of Django's tasks framework (`django.tasks`, or the `django-tasks` backport)
        reported from the framework's signals, with no change to their code: `True`
        (every task) or a list of prefixes of the tasks' dotted paths
        (`["myapp.tasks."]`). The app connects to the signals when it starts if this is
        set. Progress tasks (`@progress_task`) report themselves; this only adds their
        queued step."""),
    "MAX_STREAMS_PER_USER": spec(None, whole(1, optional=True, unit="streams"), """
        Streams one logged-in user may hold open in one process; over it a connect
        gets 429 with `Retry-After`. `None`: no cap."""),
    "MAX_STREAMS_PER_ADDRESS": spec(None, whole(1, optional=True, unit="streams"), """
        Streams one client address may hold open in one process (the address the
        server reports: behind a proxy, the proxy's unless it forwards the client's).
        `None`: no cap."""),
    "STREAM_CAP_RETRY_AFTER": spec(10, whole(0, unit="seconds"), """
        Seconds sent as `Retry-After` with a 429 from the caps above."""),
    "SHUTDOWN_GRACE": spec(1.5, seconds(zero=True), """
        On SIGTERM or SIGINT, seconds at most to end every stream with a retry hint
        before the server's own shutdown proceeds; `0` leaves signals alone."""),
    "LEASE_TTL": spec(30.0, seconds(), """
        Seconds a producer's lease on its execution lasts without renewal (renewed
        every third of it); an execution whose lease expired is ended as
        `lost`.""", "django_sse_exec.E005"),
    "LEASE_CHECK": spec(5.0, seconds(), """
        Seconds between a web process's checks for expired leases.""",
                        "django_sse_exec.E005"),
    "LEASE_CLAIM_GRACE": spec(30.0, seconds(), """
        Seconds a process that claimed an expired lease has to end the execution
        before another process may claim it again.""", "django_sse_exec.E005"),
    "STALL_AFTER": spec(None, seconds(optional=True), """
        Seconds without a report (any event its producer sends) after which an open
        execution gets `execution-stalled`, and `execution-resumed` at its next report.
        Web processes check about every fifth of it. `None`: stalls are not
        watched (and sends do not note their time)."""),
    "SEND_KEYS_MAX": spec(10_000, whole(1, unit="keys"), """
        Keys of keyed sends (`send_sse_event(..., key=...)`, and the reporters'
        events) remembered per execution, newest first; a key older than this many
        later keyed sends of the execution can be sent again. They expire with the log."""),
    "AUTHORIZE_CANCEL": spec("django_sse_exec.auth.cancel_token", choice_or_path(call=True), """
        Who may cancel an execution through its cancel URL: the dotted path of (or
        the) callable `(request, execution_id) -> bool`, sync or async. The default,
        `django_sse_exec.auth.cancel_token`, accepts the signed URL of `cancel_url()`
        (no CSRF token needed); any other policy (`authenticated_user`, `staff_only`,
        yours) authorises the session, so the POST must carry Django's CSRF token."""),
}

#: Every key's default.
DEFAULTS: dict[str, Any] = {key: item.default for key, item in SETTINGS.items()}


def problem(key: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``key`` (None when it is, or the key is unknown)."""
    item = SETTINGS.get(key)
    if item is None or item.accepts(value):
        return None
    return f'SSE_EXEC["{key}"] = {value!r}: expected {item.expected}'


def _given() -> Mapping[str, Any]:
    """``settings.SSE_EXEC`` as given (an empty dict when unset)."""
    user = getattr(django_settings, "SSE_EXEC", None) or {}
    if not isinstance(user, Mapping):
        raise ImproperlyConfigured(f"SSE_EXEC = {user!r}: expected a dict")
    return user


class GivenSettings:
    """``SSE_EXEC`` merged over the defaults, as given: nothing validated.

    For the system checks, which report an invalid value instead of raising.
    """

    def __getattr__(self, name: str) -> Any:
        if name not in SETTINGS:
            raise AttributeError(f"SSE_EXEC has no setting {name!r}")
        return _given().get(name, DEFAULTS[name])

    def problems(self) -> dict[str, str]:
        """Each key whose value is outside its spec, with the message that says so."""
        found = {key: problem(key, value) for key, value in _given().items()}
        return {key: message for key, message in found.items() if message is not None}

    def unknown_keys(self) -> list[str]:
        """Keys in ``settings.SSE_EXEC`` that the app does not know (likely typos)."""
        return sorted(set(_given()) - set(SETTINGS))


class Settings(GivenSettings):
    """Attribute access to ``SSE_EXEC`` merged over the defaults, validated.

    Values are merged and checked at the first read after each change of
    ``SSE_EXEC`` and, when all are valid, cached as instance attributes, so a read
    on a hot path is a plain attribute lookup. While any value is invalid nothing
    is cached and every read raises ``ImproperlyConfigured`` naming each invalid
    key, its value and the expected form: no code runs on a half-valid
    configuration.
    """

    _problems: dict[str, str] | None = None

    def __getattr__(self, name: str) -> Any:
        if name not in SETTINGS:
            raise AttributeError(f"SSE_EXEC has no setting {name!r}")
        if self._problems is None:
            self._problems = self.problems()
            if not self._problems:
                given = _given()
                self.__dict__.update({key: given.get(key, item.default) for key, item in SETTINGS.items()})
                return self.__dict__[name]
        ids = sorted({SETTINGS[key].check_id for key in self._problems})
        raise ImproperlyConfigured(
            f"{'; '.join(self._problems.values())} (`manage.py check` reports it: {', '.join(ids)})")

    def reload(self) -> None:
        """Forget the cached values: the next read merges and validates again."""
        self.__dict__.clear()


sse_settings = Settings()
given_settings = GivenSettings()

def check_values() -> list[CheckMessage]:
    """An error for each value outside its spec, naming the key, the value and the
    expected form, under the key's check id (``E016``, or its dedicated check's)."""
    try:
        found = given_settings.problems()
    except ImproperlyConfigured as exc:  # SSE_EXEC itself is not a dict
        return [Error(str(exc), hint='Give a dict, e.g. SSE_EXEC = {"KEEPALIVE": 15}.', id=CHECK_ID)]
    return [Error(message, hint=f"Remove it (default {SETTINGS[key].default!r}) or give "
                                f"{SETTINGS[key].expected}.", id=SETTINGS[key].check_id)
            for key, message in found.items()]


@receiver(setting_changed)
def _on_setting_changed(setting: str, **kwargs: object) -> None:
    if setting == "SSE_EXEC":
        sse_settings.reload()


__all__ = ["CHECK_ID", "DEFAULTS", "SETTINGS", "GivenSettings", "Settings", "check_values",
           "given_settings", "problem", "sse_settings"]
