"""One sender process of the chaos run: sync ``send_sse_event`` in a loop, as a Celery task would.

Run by :mod:`tests.chaos` as ``python -m tests.chaos_sender RECORD STOP EXECUTION...``
with ``DJANGO_SETTINGS_MODULE=tests.settings`` and the run's Redis environment.
It sends to its executions in turn (each execution has this one sender), paced at
``--rate`` events per second in all, until the file ``STOP`` exists; then it closes
every execution (retrying while Redis is down) and exits.

Every send is written to ``RECORD`` (JSON lines, flushed at once) *after* it
returned: ``{"e": execution, "q": sequence, "id": returned id}``, or with
``"id": null`` and the error when it raised. A send that raised is not counted as
sent and not retried (it may still have been logged: the check allows it to appear
once). The payload carries ``q``, so a client's event maps back to its send.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import IO, Any


def record(out: IO[str], **fields: Any) -> None:
    out.write(json.dumps(fields) + "\n")
    out.flush()


def close_all(out: IO[str], executions: list[str], deadline: float) -> None:
    """Close every execution, retrying each while the store is unavailable (until ``deadline``)."""
    from django_sse_exec import StoreUnavailable, close_sse_connections

    for execution in executions:
        while True:
            try:
                record(out, e=execution, closed=close_sse_connections(execution))
                break
            except StoreUnavailable as exc:
                if time.monotonic() > deadline:
                    record(out, e=execution, closed=None, error=repr(exc))
                    break
                time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("record")
    parser.add_argument("stop")
    parser.add_argument("executions", nargs="+")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second, in all")
    parser.add_argument("--pad", type=int, default=100, help="bytes of padding per event")
    args = parser.parse_args()

    import django

    django.setup()
    from django_sse_exec import StoreUnavailable, send_sse_event

    pad = "x" * args.pad
    interval = 1.0 / args.rate
    with open(args.record, "a", encoding="utf-8") as out:
        record(out, pid=os.getpid(), started=time.time())
        q = 0
        next_at = time.monotonic()
        while not os.path.exists(args.stop):
            execution = args.executions[q % len(args.executions)]
            started = time.time()
            try:
                event_id = send_sse_event(execution, "tick", {"q": q, "pad": pad})
                record(out, e=execution, q=q, id=event_id, t=round(started, 3))
            except StoreUnavailable as exc:
                record(out, e=execution, q=q, id=None, error=repr(exc)[:200], t=round(started, 3))
            except Exception as exc:  # anything else is a bug the tally reports
                record(out, e=execution, q=q, id=None, error=repr(exc)[:200], unexpected=True,
                       t=round(started, 3))
            q += 1
            next_at = max(next_at + interval, time.monotonic())
            time.sleep(max(0.0, next_at - time.monotonic()))
        close_all(out, args.executions, time.monotonic() + 60)
        record(out, done=time.time())


if __name__ == "__main__":
    main()
