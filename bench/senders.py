"""Sender processes of the realistic scenario: Celery-like workers, each a sync loop.

Each process is started once per run by :mod:`bench.realistic` and configures
Django (the benchmark's settings, the run's private Redis). It then reads one
JSON command per line on stdin and answers one JSON line on stdout:

``{"mode": "app" | "raw", "prefix": ..., "executions": [...], "t0": ..., "seconds": ...}``
    send one event per second to each of ``executions`` for ``seconds`` seconds,
    starting at wall-clock time ``t0``, spread evenly over each second. "app"
    calls the public sync ``send_sse_event`` (what a Celery task does); "raw"
    sends the raw server's message with a plain redis-py ``PUBLISH``. Every
    payload starts with its send time ``"t"`` (the load client's latency).
    The answer counts the sends and how late the last one was against its plan.

A sender that falls behind does not skip events: it sends them late, and the
report shows the rate it achieved.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

PAD = "x" * 64  # as in bench.run: a realistic progress event is ~100 bytes of JSON


def _app_sender() -> Any:
    from django_sse_exec import send_sse_event

    def send(execution_id: str, n: int) -> None:
        send_sse_event(execution_id, "tick", {"t": time.time(), "n": n, "pad": PAD})

    return send


def _raw_sender(prefix: str) -> Any:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])

    def send(execution_id: str, n: int) -> None:
        data = json.dumps({"t": time.time(), "n": n, "pad": PAD}, separators=(",", ":"))
        client.publish(f"{prefix}.{execution_id}", f"{n}\ntick\n{data}")

    return send


def run_command(command: dict[str, Any], senders: dict[str, Any]) -> dict[str, Any]:
    """Carry out one command (see the module docstring); return its report."""
    mode = command["mode"]
    key = mode if mode == "app" else f"raw:{command['prefix']}"
    if key not in senders:
        senders[key] = _app_sender() if mode == "app" else _raw_sender(command["prefix"])
    send = senders[key]
    executions: list[str] = command["executions"]
    t0, seconds = float(command["t0"]), int(command["seconds"])
    step = 1.0 / max(len(executions), 1)
    sent, worst_late = 0, 0.0
    started = time.time()
    for second in range(seconds):
        for index, execution_id in enumerate(executions):
            due = t0 + second + index * step
            late = time.time() - due
            if late < 0:
                time.sleep(-late)
            else:
                worst_late = max(worst_late, late)
            send(execution_id, second + 1)
            sent += 1
    return {"sent": sent, "seconds": time.time() - started, "worst_late_s": worst_late,
            "planned_s": seconds}


def main() -> None:
    import django

    django.setup()
    senders: dict[str, Any] = {}
    # Warm up: the first app send probes the delivery path and loads scripts.
    run_command({"mode": "app", "executions": [f"warm-sender-{os.getpid()}"],
                 "t0": time.time(), "seconds": 1}, senders)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        print(json.dumps(run_command(json.loads(line), senders)), flush=True)


if __name__ == "__main__":
    main()
