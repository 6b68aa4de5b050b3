"""``manage.py simulate_execution``: run a simulated execution from outside the web server.

It reports with the sync helpers, as a Celery worker or a cron job would. With
``REDIS_URL`` set (Redis channel layer and store) the dashboard of any web
process shows it live: open the printed ``/?execution=<id>&token=<token>`` link
(the token, signed with ``SECRET_KEY``, is what lets the dashboard show an
execution it did not start; the id alone is not enough).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.core.management.base import BaseCommand, CommandError

from django_sse_exec import ExecutionCancelled, stream_url
from django_sse_exec.wire import is_valid_execution_id

from ...executor import Simulation, new_execution_id, run_blocking


class Command(BaseCommand):
    help = "Run a simulated execution, reporting its events with the sync helpers."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--id", dest="execution_id", default=None,
                            help="execution id (default: a new one)")
        parser.add_argument("--tasks", type=int, default=10)
        parser.add_argument("--delay-ms", type=int, default=500)
        parser.add_argument("--fail-rate", type=float, default=0.0)
        parser.add_argument("--fail-task", type=int, action="append", default=[],
                            help="task number that fails (repeatable)")
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--steps", action="store_true",
                            help="report weighted steps inside each task (rate, time left)")
        parser.add_argument("--stall", action="store_true",
                            help="the middle task goes silent long enough to be stalled")

    def handle(self, *args: Any, **options: Any) -> None:
        execution_id = options["execution_id"] or new_execution_id()
        if not is_valid_execution_id(execution_id):
            raise CommandError(f"invalid execution id {execution_id!r}")
        if options["tasks"] < 1 or options["delay_ms"] < 0:
            raise CommandError("--tasks must be at least 1 and --delay-ms not negative")
        sim = Simulation(execution_id, tasks=options["tasks"], delay_ms=options["delay_ms"],
                         fail_rate=options["fail_rate"],
                         fail_tasks=frozenset(options["fail_task"]), seed=options["seed"],
                         with_steps=options["steps"], stall=options["stall"])
        query = urlencode({"execution": execution_id,
                           "token": parse_qs(urlsplit(stream_url(execution_id)).query)["token"][0]})
        self.stdout.write(f"execution {execution_id}: open /?{query}")
        self.stdout.flush()

        def sent(event: str, event_id: int) -> None:
            self.stdout.write(f"sent {event_id} {event}")
            self.stdout.flush()

        try:
            run_blocking(sim, on_sent=sent)
        except (KeyboardInterrupt, ExecutionCancelled):
            self.stdout.write(f"execution {execution_id}: cancelled")
            return
        self.stdout.write(f"execution {execution_id}: {sim.status}")
