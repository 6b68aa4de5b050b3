"""The instruction-count benchmark's parts: its workload, callgrind's marks, the check, the hidden set.

``make bench-instructions`` takes minutes under valgrind; these check in seconds
that what it relies on still holds: the workload delivers every event to every
stream of every target (natively, so a renamed import or a changed connect
breaks here, not in the next benchmark run), phase marks split callgrind's
count exactly, the check fails a figure past its margin and only then, and a
process started without the fast dependency set really runs without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import callgrind, deps
from bench.instructions import compare

ROOT = Path(__file__).resolve().parent.parent


def test_workload_delivers_every_event_to_every_stream_of_every_target() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.instructions_workload", "--streams", "4", "--fanout", "3",
         "--rounds", "2", "--connect-batch", "2", "--limit", "60"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=deps.env_without({"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"}))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["runtime"]["loop"].startswith("asyncio")
    for target in ("raw", "fast", "view"):
        # 2 warm-up streams x 2 events, 4 streams x 2 rounds, 3 fan-out streams x 2 events
        assert report["targets"][target] == {"statuses": {"200": 7}, "events": 4 + 8 + 6}, target
        assert report["units"][f"{target}/event"] == 8
        assert report["units"][f"{target}/fanout"] == 6
        assert report["units"][f"{target}/disconnect"] == 7


@pytest.mark.skipif(callgrind.missing_tools() != [], reason="needs valgrind and a C compiler")
def test_marks_split_the_count_by_phase() -> None:
    code = ("from bench.callgrind import Marks\n"
            "def work(n):\n    return sum(i * i for i in range(n))\n"
            "marks = Marks()\nwork(100)\nmarks.start()\nwork(20000)\nmarks.dump('one')\n"
            "work(40000)\nmarks.dump('two')\nwork(20000)\nmarks.dump('three')\n")
    counts, _ = callgrind.measure([sys.executable, "-c", code],
                                  {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"},
                                  timeout=120)
    assert set(counts) == {"one", "two", "three"}
    assert 0.99 < counts["three"] / counts["one"] < 1.01  # the same work counts the same
    assert 1.9 < counts["two"] / counts["one"] < 2.1  # twice the work, twice the count


def test_the_check_fails_a_figure_past_its_margin_and_only_then() -> None:
    baseline = {"configs": {"memory/stdlib": {"fast/event": 1000, "fast/connect": 1000}}}

    def measured(event: float, connect: float) -> dict:
        return {"memory/stdlib": {"per_unit": {"fast/event": event, "fast/connect": connect}}}

    status, lines = compare(measured(1019, 1000), baseline, 0.02)
    assert status == 0 and lines == ["every figure within +2% of the baseline"]
    status, lines = compare(measured(1021, 950), baseline, 0.02)
    assert status == 1
    assert any(line.startswith("REGRESSION memory/stdlib fast/event") for line in lines)
    assert any(line.startswith("better memory/stdlib fast/connect") for line in lines)


def test_a_process_started_without_the_fast_set_does_not_see_it() -> None:
    code = ("import importlib, json\n"
            "from redis.asyncio.connection import DefaultParser\n"
            "hidden = []\n"
            "for name in ('hiredis', 'uvloop', 'httptools'):\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except ImportError:\n        hidden.append(name)\n"
            "print(json.dumps({'parser': DefaultParser.__name__, 'hidden': hidden}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=deps.env_without({"PATH": "/usr/bin:/bin"}))
    seen = json.loads(done.stdout)
    assert seen == {"parser": "_AsyncRESP3Parser", "hidden": ["hiredis", "uvloop", "httptools"]}


@pytest.mark.skipif(deps.missing() != [], reason="the fast set is not installed")
def test_a_process_started_with_the_fast_set_uses_it() -> None:
    code = ("import json\nfrom bench import deps\n"
            "async def describe():\n    return deps.describe()\n"
            "print(json.dumps(deps.run(describe(), 'uvloop')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                          env=deps.env_for(True, {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}))
    seen = json.loads(done.stdout)
    assert seen["loop"] == "uvloop.Loop" and seen["redis_parser"] == "_AsyncHiredisParser"
