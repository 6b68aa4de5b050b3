"""What a chaos run did and saw: the senders' records, the faults, the tally, the evidence.

:mod:`tests.chaos` fills a :class:`Report` and prints it; the failures come with
the client's received ids around each violation and its connection history, so a
failed run can be diagnosed from its output (the run directory keeps every
process's log and the senders' records).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos_check import CLOSED, RESET, Received, Sent, Tally, Verdict, incarnations
from tests.loadclient import StreamClient


@dataclass
class Records:
    """Every send of every sender, per execution in send order; closes; unexpected errors."""

    sends: dict[str, list[Sent]] = field(default_factory=dict)
    closed: dict[str, int | None] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)


def read_records(paths: Iterable[Path]) -> Records:
    """Read the senders' JSON-lines records (one sender per execution, so file order is send order)."""
    records = Records()
    for path in sorted(paths):
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if "q" in entry:
                records.sends.setdefault(entry["e"], []).append(
                    Sent(entry["q"], entry["id"], entry.get("error", "")))
                if entry.get("unexpected"):
                    records.unexpected.append(f"{entry['e']} q={entry['q']}: {entry['error']}")
            elif "closed" in entry:
                records.closed[entry["e"]] = entry["closed"]
    return records


def clients_received(client: StreamClient) -> list[Received]:
    """A load client's events as the check reads them (ids, names, the payload's ``q``)."""
    received = []
    for event in client.events:
        if event.event in (RESET, CLOSED):
            event_id = int(event.id) if event.event == CLOSED and event.id else None
            received.append(Received(event_id, event.event))
            continue
        try:
            q = json.loads(event.data).get("q")
        except ValueError:
            q = None
        received.append(Received(int(event.id) if event.id else None, event.event, q))
    return received


def trail(events: Iterable[Received]) -> str:
    """A client's events in short: runs of consecutive ids as ``a..b``, ``R`` a reset, ``C9`` closed."""
    parts: list[str] = []
    start = last = None
    for event in [*events, Received(None, "")]:
        if event.id is not None and event.event not in (RESET, CLOSED) and last is not None \
                and event.id == last + 1:
            last = event.id
            continue
        if start is not None:
            parts.append(f"{start}..{last}" if last != start else f"{start}")
            start = last = None
        if event.event == RESET:
            parts.append("R")
        elif event.event == CLOSED:
            parts.append(f"C{event.id}")
        elif event.id is not None:
            start = last = event.id
    return " ".join(parts)


class Faults:
    """The faults of a run, in order, with their time from the start."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        #: The wall-clock time of the start (the senders' records carry wall-clock times).
        self.started_wall = time.time()
        self.log: list[tuple[float, str, str]] = []

    def note(self, kind: str, detail: str = "") -> None:
        self.log.append((time.monotonic() - self.started, kind, detail))

    def counts(self) -> Counter[str]:
        return Counter(kind for _, kind, _ in self.log)


@dataclass
class Report:
    """The run's tally and its failing clients."""

    config: Any
    run_dir: Path
    faults: Faults
    records: Records
    seconds: float
    tally: Tally = field(default_factory=Tally)
    reconnects: int = 0
    failures: list[tuple[str, Verdict, StreamClient]] = field(default_factory=list)
    clients: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, client: StreamClient, verdict: Verdict) -> None:
        self.tally.add(verdict)
        self.reconnects += len(client.connects) - 1
        self.clients.append({
            "client": name, "ok": verdict.ok, "errors": verdict.errors,
            "events": trail(clients_received(client)),
            "connects": [{"status": c.status, "ended": c.ended, "events": c.events,
                          "error": c.error, "at": round(c.started - self.faults.started, 2),
                          "for": round(c.finished - c.started, 2) if c.finished else None}
                         for c in client.connects]})
        if not verdict.ok:
            self.failures.append((name, verdict, client))

    def save(self) -> Path:
        """Write every client's events, connects and errors, the faults and the sends'
        incarnations to ``clients.json`` in the run directory; return its path."""
        path = self.run_dir / "clients.json"
        path.write_text(json.dumps({
            "started_wall": self.faults.started_wall, "faults": self.faults.log,
            "incarnations": self.incarnation_lines(), "clients": self.clients}, indent=1))
        return path

    @property
    def unclosed(self) -> list[str]:
        return [e for e in self.records.sends if self.records.closed.get(e) is None]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.records.unexpected and not self.unclosed

    def incarnation_lines(self) -> list[str]:
        """Per execution: each incarnation's confirmed sends, id range, and failed sends."""
        lines = []
        for execution, sends in sorted(self.records.sends.items()):
            parts = []
            for inc in incarnations(sends):
                ids = inc.ids
                span = f"{ids[0]}..{ids[-1]}" if ids else "-"
                parts.append(f"{len(ids)} sent (ids {span}, {len(inc.sends) - len(ids)} failed)")
            lines.append(f"  {execution}: " + " | ".join(parts)
                         + f" | closed at {self.records.closed.get(execution)}")
        return lines

    def print(self, most: int = 8) -> None:
        config, tally = self.config, self.tally
        sends = [s for sends in self.records.sends.values() for s in sends]
        per_inc: Counter[int] = Counter()
        for execution_sends in self.records.sends.values():
            for k, inc in enumerate(incarnations(execution_sends)):
                per_inc[k] += len(inc.ids)
        counts = self.faults.counts()
        print(f"\n[chaos {config.layer}] {'OK' if self.ok else 'FAILED'} seed={config.seed} "
              f"seconds={self.seconds:.0f} started={self.faults.started_wall:.3f} "
              f"run_dir={self.run_dir}")
        print(f"  clients={tally.clients} executions={len(self.records.sends)} "
              f"senders={config.senders} sent={sum(s.id is not None for s in sends)} "
              f"send_failures={sum(s.id is None for s in sends)} "
              f"unexpected_send_errors={len(self.records.unexpected)} "
              f"sent_per_incarnation={[per_inc[k] for k in sorted(per_inc)]}")
        print(f"  kills={counts['kill']} terms={counts['term']} web_restarts={counts['web-restart']} "
              f"redis_restarts_with_data={counts['redis-save']} "
              f"redis_restarts_without_data={counts['redis-wipe']} client_reconnects={self.reconnects}")
        print(f"  delivered={tally.received} lost={tally.lost} duplicated={tally.duplicated} "
              f"out_of_order={tally.out_of_order} resets={tally.resets} "
              f"needless_resets={tally.needless_resets} "
              f"tail_lost_with_log={tally.tail_lost_with_log} failed_clients={tally.failed_clients}")
        print("  faults: " + ", ".join(f"{t:.1f}s {kind} {detail}".strip()
                                       for t, kind, detail in self.faults.log))
        for line in self.incarnation_lines():
            print(line)
        for line in self.records.unexpected[:most]:
            print(f"  unexpected send error: {line}")
        for name, verdict, client in self.failures[:most]:
            print(f"  client {name}: {len(verdict.errors)} violation(s)")
            for error in verdict.errors[:3]:
                print(f"    - {error}")
            history = [f"{c.status}/{c.ended}/{c.events}ev@{c.started - self.faults.started:.1f}s"
                       for c in client.connects]
            print(f"    connects (status/ended/events@start): {' '.join(history[-10:])}")
            print(f"    events: {trail(clients_received(client))[-300:]}")
        if len(self.failures) > most:
            print(f"  ... and {len(self.failures) - most} more failing clients")
        print(f"  every client's events and connects: {self.save()}")
