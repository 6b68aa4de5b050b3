"""The soak run's clients: follow each execution its senders start, judge it once it ended.

:class:`Follower` reads the sender processes' records (:mod:`bench.soak_sender`) as
they grow. A ``start`` opens one to three clients that behave like ``EventSource``
(:class:`tests.loadclient.StreamClient`: reconnect after ``retry:`` with
``Last-Event-ID``); sends and the close are noted; once an execution is closed and
all its clients have ended, each client is judged against the record by
:mod:`tests.chaos_check` (every confirmed event exactly once, in order; a send that
failed while Redis was down may appear once or not at all) and the execution is
forgotten, so the run's own memory stays flat however long it runs.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tests.chaos_check import Sent, Tally, check_client, incarnations
from tests.chaos_report import clients_received, trail
from tests.loadclient import StreamClient


class Tail:
    """The complete JSON lines appended to a file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def lines(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


@dataclass
class Followed:
    """One execution: its sender's record so far and the clients following it."""

    sends: list[Sent] = field(default_factory=list)
    closed: Optional[int] = None
    ended: bool = False
    clients: list[StreamClient] = field(default_factory=list)


class Follower:
    """Every execution of the run, from its start to its verdict.

    ``url(execution_id)`` is the absolute URL of its stream; ``streams`` the range of
    clients per execution.
    """

    def __init__(self, url: Callable[[str], str], streams: tuple[int, int],
                 rng: random.Random) -> None:
        self.url, self.streams, self.rng = url, streams, rng
        self.tails: list[Tail] = []
        self.followed: dict[str, Followed] = {}
        self.tally = Tally()
        #: The first failing clients, described (their violations and received ids).
        self.failures: list[str] = []
        #: Sends that raised something other than ``StoreUnavailable``.
        self.unexpected: list[str] = []
        self.counts = {"executions": 0, "sent": 0, "send_failures": 0, "streams": 0,
                       "reconnects": 0}

    def follow(self, path: Path) -> None:
        """Read a sender's record from now on."""
        self.tails.append(Tail(path))

    def read(self) -> None:
        """Follow new executions, note sends and closes, judge executions that ended."""
        for tail in self.tails:
            for entry in tail.lines():
                if "start" in entry:
                    self._start(entry["start"])
                elif "q" in entry:
                    self.followed[entry["e"]].sends.append(Sent(entry["q"], entry["id"],
                                                                entry.get("error", "")))
                    self.counts["sent" if entry["id"] is not None else "send_failures"] += 1
                    if entry.get("unexpected"):
                        self.unexpected.append(f"{entry['e']} q={entry['q']}: {entry['error']}")
                elif "closed" in entry:
                    followed = self.followed[entry["e"]]
                    followed.closed, followed.ended = entry["closed"], True
        for execution, followed in list(self.followed.items()):
            if followed.ended and all(c.finished for c in followed.clients):
                self.judge(execution, followed)

    def _start(self, execution: str) -> None:
        followed = self.followed[execution] = Followed()
        url = self.url(execution)
        followed.clients = [StreamClient(url) for _ in range(self.rng.randint(*self.streams))]
        for client in followed.clients:
            asyncio.create_task(client.run(connect_timeout=30))
        self.counts["executions"] += 1
        self.counts["streams"] += len(followed.clients)

    def judge(self, execution: str, followed: Followed) -> None:
        """Add each client's verdict to the tally and forget the execution."""
        incs = incarnations(followed.sends)
        for index, client in enumerate(followed.clients):
            verdict = check_client(clients_received(client), incs, client.finished)
            self.tally.add(verdict)
            self.counts["reconnects"] += len(client.connects) - 1
            if not verdict.ok and len(self.failures) < 20:
                self.failures.append(f"{execution}/{index}: {'; '.join(verdict.errors[:3])}; "
                                     f"events: {trail(clients_received(client))[-200:]}")
        del self.followed[execution]

    def judge_rest(self) -> int:
        """Judge the executions still followed (their clients never ended); how many there were."""
        rest = len(self.followed)
        for execution, followed in list(self.followed.items()):
            for client in followed.clients:
                client.stop()
            self.judge(execution, followed)
        return rest

    @property
    def running(self) -> int:
        """Executions started and not yet closed."""
        return sum(not f.ended for f in self.followed.values())

    @property
    def delivered(self) -> int:
        """Events received so far, by every client."""
        return self.tally.received + sum(len(c.events) for f in self.followed.values()
                                         for c in f.clients)
