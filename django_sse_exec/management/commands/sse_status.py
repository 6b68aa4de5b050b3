"""``manage.py sse_status``: what the store knows about an execution, at a glance.

Open streams across all processes, the last id, whether it is closed, and how
much history is retained for replay — the questions asked when a page "hangs".
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...store import get_store
from .. import execution_id_arg, local_store_problem, run


async def execution_status(execution_id: str) -> dict[str, Any]:
    """Client count, last id, closed flag and retained history of the execution."""
    store = get_store()
    log = await store.read(execution_id, upto=0)
    return {
        "executionId": execution_id,
        "clients": await store.count_members(execution_id),
        "lastEventId": log.last_id,
        "closed": log.closed,
        "history": max(0, log.last_id - log.first_id + 1),
        "firstRetainedId": log.first_id if log.last_id >= log.first_id else None,
    }


class Command(BaseCommand):
    help = "Show an execution's open streams, last event id, closed flag and history size."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("execution_id", type=execution_id_arg)
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        problem = local_store_problem()
        if problem:
            raise CommandError(problem)
        status = run(lambda: execution_status(options["execution_id"]))
        if options["json"]:
            self.stdout.write(json.dumps(status))
            return
        history = f"{status['history']} events"
        if status["firstRetainedId"] is not None:
            history += f" (ids {status['firstRetainedId']}-{status['lastEventId']})"
        self.stdout.write(
            f"execution  {status['executionId']}\n"
            f"clients    {status['clients']}\n"
            f"last id    {status['lastEventId']}\n"
            f"closed     {'yes' if status['closed'] else 'no'}\n"
            f"history    {history}"
        )
