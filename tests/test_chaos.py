"""The chaos run, CI-sized, on each Redis channel layer (see :mod:`tests.chaos`).

2 daphne + 1 uvicorn processes, 4 sender processes, 200 reconnecting clients for
about a minute per layer, while web processes are killed (-9 and TERM) and restarted
and Redis restarts with and without its data. Every client must end with every
event of each incarnation exactly once, in order, or a ``stream-reset`` and the
complete new log. ``make chaos`` runs the same for minutes.
"""

from __future__ import annotations

import os

import pytest

from tests.chaos import ChaosConfig, run_chaos

pytestmark = pytest.mark.asyncio

#: Seconds of faults per layer (the whole test takes about twice that). Every kind of
#: fault happens at least once however short; `make chaos` is the long run.
SECONDS = float(os.environ.get("CHAOS_SECONDS", "20"))


@pytest.mark.parametrize("layer", ["core", "pubsub"])
@pytest.mark.timeout(int(SECONDS) * 4 + 240)
async def test_every_client_gets_every_event_through_kills_and_redis_restarts(
        layer, private_redis, tmp_path):
    config = ChaosConfig(layer=layer, seconds=SECONDS, clients=200, senders=4,
                         executions_per_sender=2, rate=20, run_dir=tmp_path / "run")
    report = await run_chaos(config, private_redis)
    report.print()
    counts = report.faults.counts()
    assert counts["kill"] and counts["term"] and counts["redis-save"] and counts["redis-wipe"]
    assert report.tally.clients == 200
    assert not report.records.unexpected, report.records.unexpected[:5]
    assert not report.unclosed, report.unclosed
    assert not report.failures, [f"{name}: {v.errors[:2]}" for name, v, _ in report.failures[:5]]
