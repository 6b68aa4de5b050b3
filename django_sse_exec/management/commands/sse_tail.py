"""``manage.py sse_tail``: follow an execution in the terminal, like ``tail -f``.

Prints the retained history, then live events, one line each (id, event,
compact data), and exits after ``stream-closed``. Everything it prints that it
did not write itself (data, ids and names, a server's error) has its control
and bidirectional characters escaped (:mod:`django_sse_exec.management.terminal`).
By default it follows the
execution in-process with the app's own stream logic
(:func:`~django_sse_exec.streams.single.stream_events`: replay, live, gap repair), which
reaches other processes' events through the Redis store and channel layer.
``--url`` follows a server over HTTP instead, with a token minted by
:func:`~django_sse_exec.stream_url` and reconnects that resume from the last id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...auth.stream_urls import stream_url
from ...store import get_store
from ...streams.single import stream_events
from ...wire import STREAM_CLOSED
from .. import execution_id_arg, local_store_problem, run
from ..terminal import escape_controls

#: Seconds between reconnects when a stream ends without ``stream-closed``.
RECONNECT_DELAY = 1.0


class EventPrinter:
    """Parses SSE bytes incrementally and writes one line per event."""

    def __init__(self, write: Any, *, as_json: bool = False, width: int = 0) -> None:
        self.write = write
        self.as_json = as_json
        self.width = width
        self.last_id: int | None = None
        self.closed = False
        self._buffer = b""

    def feed(self, chunk: bytes) -> bool:
        """Consume ``chunk``; True once ``stream-closed`` has been printed."""
        self._buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in self._buffer and not self.closed:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            self._block(block.decode("utf-8", "replace"))
        return self.closed

    def _block(self, block: str) -> None:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "data" not in fields:
            return
        event_id = fields.get("id")
        if event_id is not None and event_id.isdigit():
            self.last_id = int(event_id)
        self._print(event_id, fields.get("event", "message"), fields["data"])
        if fields.get("event") == STREAM_CLOSED:
            self.closed = True

    def _print(self, event_id: str | None, event: str, data: str) -> None:
        if self.as_json:
            try:
                value: Any = json.loads(data)
            except ValueError:
                value = data
            line = escape_controls(json.dumps({"id": event_id, "event": event, "data": value},
                                              ensure_ascii=False), json=True)
        else:
            if self.width and len(data) > self.width:
                data = data[: self.width - 1] + "…"
            line = " ".join(escape_controls(part) for part in (event_id or "-", event, data))
        self.write(line)


class Command(BaseCommand):
    help = ("Follow an execution like tail -f: replay its history, then live events "
            "(id, event, data per line); exit after stream-closed.")
    # A reader, often of another server (--url): this project's system check
    # warnings are not its output, and would mix into what it prints.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("execution_id", type=execution_id_arg)
        parser.add_argument("--after", type=int, default=None, metavar="ID",
                            help="start after this event id (default: the whole history)")
        parser.add_argument("--url", metavar="BASE_URL",
                            help="follow a server over HTTP, e.g. http://127.0.0.1:8000")
        parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                            help="fail if the execution is not closed within this time")
        parser.add_argument("--json", action="store_true",
                            help="print each event as a JSON object {id, event, data}")
        parser.add_argument("--width", type=int, default=0, metavar="CHARS",
                            help="truncate data to this many characters (0: never)")

    def handle(self, *args: Any, **options: Any) -> None:
        execution_id: str = options["execution_id"]
        after: int | None = options["after"]
        if after is not None and after < 0:
            raise CommandError("--after must be a non-negative event id")

        def write(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        printer = EventPrinter(write, as_json=options["json"], width=options["width"])
        timeout: float | None = options["timeout"]
        try:
            if options["url"]:
                self._follow_url(options["url"], execution_id, after, printer, timeout)
            else:
                problem = local_store_problem()
                if problem:
                    raise CommandError(problem + "; or use --url to follow a server")
                run(lambda: self._follow_local(execution_id, after, printer, timeout))
        except KeyboardInterrupt:
            return

    async def _follow_local(self, execution_id: str, after: int | None, printer: EventPrinter,
                            timeout: float | None) -> None:
        try:
            await asyncio.wait_for(self._stream_local(execution_id, after, printer), timeout)
        except asyncio.TimeoutError:
            raise CommandError(f"execution {execution_id} was not closed within {timeout:g} s") from None

    async def _stream_local(self, execution_id: str, after: int | None,
                            printer: EventPrinter) -> None:
        state = await get_store().read(execution_id, upto=0)
        if state.closed and after is not None and after >= state.last_id:
            self.stderr.write(f"execution {execution_id} is closed; nothing after id {after}")
            return
        while True:
            position = printer.last_id if printer.last_id is not None else after
            async with contextlib.aclosing(stream_events(execution_id, position)) as chunks:
                async for chunk in chunks:
                    if printer.feed(chunk):
                        return
            await asyncio.sleep(RECONNECT_DELAY)  # the stream ended on an error: resume

    def _follow_url(self, base_url: str, execution_id: str, after: int | None,
                    printer: EventPrinter, timeout: float | None) -> None:
        url = base_url.rstrip("/") + stream_url(execution_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        connected_once = False
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise CommandError(f"execution {execution_id} was not closed within {timeout:g} s")
            position = printer.last_id if printer.last_id is not None else after
            headers = {"Accept": "text/event-stream"}
            if position is not None:
                headers["Last-Event-ID"] = str(position)
            try:
                with urlopen(Request(url, headers=headers),
                             timeout=min(remaining or 60.0, 60.0)) as response:
                    connected_once = True
                    if response.status == 204:
                        self.stderr.write(f"execution {execution_id} is closed; nothing after "
                                          f"id {position}")
                        return
                    for line in response:
                        if printer.feed(line):
                            return
                        if deadline is not None and time.monotonic() > deadline:
                            break
            except HTTPError as exc:
                reason = escape_controls(exc.read(500).decode("utf-8", "replace").strip())
                raise CommandError(f"{url.split('?')[0]}: HTTP {exc.code} {reason}") from None
            except (URLError, OSError) as exc:
                if not connected_once:
                    raise CommandError(f"cannot reach {base_url}: {exc}") from None
            time.sleep(RECONNECT_DELAY)
