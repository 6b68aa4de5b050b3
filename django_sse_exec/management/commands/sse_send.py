"""``manage.py sse_send``: send one event to an execution (and/or close it) from a shell.

For scripts, cron jobs and poking at a running system by hand: the same
validation as :func:`~django_sse_exec.send_sse_event`, with errors as clear
command errors and the assigned ids printed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...api import aclose_sse_connections, asend_sse_event
from .. import execution_id_arg, local_store_problem, run


class Command(BaseCommand):
    help = ("Send an event with JSON data to an execution's streams and print its id; "
            "with --close, end the execution's streams afterwards.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("execution_id", type=execution_id_arg)
        parser.add_argument("event", nargs="?", help="event name (omit with --close only)")
        parser.add_argument("data", nargs="?", default="null",
                            help="JSON data (default null; '-' reads it from stdin)")
        parser.add_argument("--close", action="store_true",
                            help="close the execution (stream-closed) after sending")

    def handle(self, *args: Any, **options: Any) -> None:
        execution_id: str = options["execution_id"]
        event: str | None = options["event"]
        if event is None and not options["close"]:
            raise CommandError("give an event name, or --close to close the execution")
        data = _parse_json(sys.stdin.read() if options["data"] == "-" else options["data"])
        problem = local_store_problem()
        if problem:
            self.stderr.write(f"warning: {problem}")

        async def act() -> list[str]:
            lines = []
            if event is not None:
                lines.append(f"{await asend_sse_event(execution_id, event, data)} {event}")
            if options["close"]:
                lines.append(f"{await aclose_sse_connections(execution_id)} stream-closed")
            return lines

        for line in run(act):
            self.stdout.write(line)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"data is not valid JSON ({exc}); quote it for the shell, "
                           """e.g. '{"progress": 1}'""") from exc
