"""Instructions per connect and per delivered event, counted by callgrind: figures noise cannot move.

    make bench-instructions                    # measure, print the table, compare with the baseline
    make bench-instructions-check              # the same; exit 1 if a figure grew past the margin
    python -m bench.instructions --update      # measure and write the baseline
    python -m bench.instructions --stability   # three runs, the third with the other core busy: the spread
    python -m bench.instructions --layers memory,redis --sets stdlib,fast --json out.json
    python -m bench.instructions --sets stdlib --keep dumps/   # then: callgrind_annotate dumps/...

Wall-clock figures move with whatever else the machine runs; the number of
instructions a process executes does not. Each configuration runs the fixed
workload of :mod:`bench.instructions_workload` once under valgrind's callgrind
(20–50 s) and divides each phase's instructions by its units: per
connect, per connect to an execution that already has a stream, per delivered
event (one stream per execution; and 50 streams on one execution), per
disconnect, for the raw asyncio reference, the fast path and the view.

Configurations: each channel layer (``memory``: channels' in-memory layer and
the memory store; ``redis``: the pub/sub layer and the Redis store, when Redis
answers) with each dependency set (``stdlib``: the standard event loop and
redis-py's Python parser; ``fast``: uvloop and hiredis, see :mod:`bench.deps`;
no HTTP is parsed in process, so httptools plays no part here). Every process
sees the same hash seed.

What the counts leave out: the kernel's work (socket writes, epoll), and the
server's HTTP parsing and framing, for raw and the app alike; a send's own
instructions are in its delivered event (in process they cannot be told apart).

The check compares with ``bench/instructions-baseline.json`` (the environment it
was taken in, the workload's sizes, every figure): a figure more than
``--margin`` (default 1 %) above its baseline fails; one that far below it is
reported, for ``--update``. The baseline only holds where it was taken: another
Python, package set or valgrind gives other counts, so a check there exits 2
and says what differs instead of passing or failing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import callgrind, deps

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "bench" / "instructions-baseline.json"
MARGIN = 0.01
#: Figures of the table: (phase label, what it is per).
FIGURES = (("connect", "connect"), ("fanout-connect", "connect to an execution with streams"),
           ("event", "delivered event, 1 stream per execution"),
           ("fanout", "delivered event, all --fanout streams on 1 execution"), ("disconnect", "disconnect"))
TARGETS = ("raw", "fast", "view")
PACKAGES = ("Django", "channels", "channels_redis", "redis", "asgiref", "msgpack", "hiredis", "uvloop",
            "prometheus_client")


def environment() -> dict[str, str]:
    """What the counts depend on besides the code: Python, packages, valgrind."""
    out = {"python": platform.python_version(), "machine": platform.machine()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    done = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    out["valgrind"] = done.stdout.strip()
    return out


def redis_answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=1).close()
        return True
    except OSError:
        return False


def measure(layer: str, fast: bool, sizes: list[str], keep: Path | None = None) -> dict[str, Any]:
    """One configuration under callgrind: instructions per unit of each target's phases.

    ``keep``: where to copy each phase's callgrind dump (for ``callgrind_annotate``).
    """
    env = deps.env_for(fast, {**os.environ, "PYTHONHASHSEED": "0",
                              "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                          os.environ.get("PYTHONPATH")]))})
    command = [sys.executable, "-m", "bench.instructions_workload", "--layer", layer,
               "--loop", "uvloop" if fast else "asyncio", *sizes]
    started = time.monotonic()
    counts, stdout = callgrind.measure(command, env, keep=keep)
    report = json.loads(stdout.strip().splitlines()[-1])
    per_unit = {label: counts[label] / units for label, units in report["units"].items()}
    return {"per_unit": per_unit, "counts": counts, "units": report["units"], "targets": report["targets"],
            "runtime": report["runtime"], "seconds": round(time.monotonic() - started, 1)}


def table(results: dict[str, dict[str, Any]]) -> str:
    """Instructions per unit of every configuration, with the app's ratios to raw."""
    rows = ["| layer / set | instructions per | raw | fast path | view | fast ×raw | view ×raw |",
            "|---|---|---|---|---|---|---|"]
    for config, result in results.items():
        per = result["per_unit"]
        for phase, what in FIGURES:
            raw, fast, view = (per.get(f"{t}/{phase}") for t in TARGETS)
            cells = [f"{v:,.0f}" if v is not None else "–" for v in (raw, fast, view)]
            ratios = [f"{v / raw:.1f}" if v is not None and raw else "–" for v in (fast, view)]
            rows.append(f"| {config} | {what} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    return "\n".join(rows)


def compare(results: dict[str, dict[str, Any]], baseline: dict[str, Any], margin: float) -> tuple[int, list[str]]:
    """Each figure against the baseline: (exit status, lines). 1 if any grew past ``margin``."""
    lines, status = [], 0
    for config, result in results.items():
        base = baseline["configs"].get(config)
        if base is None:
            lines.append(f"{config}: not in the baseline")
            continue
        for label, value in sorted(result["per_unit"].items()):
            if label not in base:
                continue
            change = value / base[label] - 1
            if change > margin:
                status = 1
                lines.append(f"REGRESSION {config} {label}: {value:,.0f} against {base[label]:,.0f} "
                             f"(+{change:.1%}, margin {margin:.0%})")
            elif change < -margin:
                lines.append(f"better {config} {label}: {value:,.0f} against {base[label]:,.0f} "
                             f"({change:.1%}; --update to keep it)")
    if status == 0:
        lines.append(f"every figure within +{margin:.0%} of the baseline")
    return status, lines


def spread(runs: list[dict[str, dict[str, Any]]]) -> str:
    """The largest relative spread (max − min) ÷ min of each figure over ``runs``."""
    lines = []
    for config in runs[0]:
        worst = []
        for label in sorted(runs[0][config]["per_unit"]):
            values = [run[config]["per_unit"][label] for run in runs]
            worst.append(((max(values) - min(values)) / min(values), label, values))
        worst.sort(reverse=True)
        lines.append(f"{config}: largest spread {worst[0][0]:.3%} ({worst[0][1]}); median figure's "
                     f"{worst[len(worst) // 2][0]:.3%}")
        for value, label, values in worst[:4]:
            lines.append(f"  {label:<22} {value:7.3%}  " + ", ".join(f"{v:,.0f}" for v in values))
    return "\n".join(lines)


class Busy:
    """A busy loop on every core but one (the "other core loaded" run of ``--stability``)."""

    def __enter__(self) -> Busy:
        count = max(1, (os.cpu_count() or 2) - 1)
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def run_all(configs: list[tuple[str, bool]], sizes: list[str],
            keep: str | None = None) -> dict[str, dict[str, Any]]:
    results = {}
    for layer, fast in configs:
        name = f"{layer}/{'fast' if fast else 'stdlib'}"
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            results[name] = measure(layer, fast, sizes, Path(keep, name.replace("/", "-")) if keep else None)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"the workload failed ({name}):\n{exc.stderr[-3000:]}") from None
        print(f"   {results[name]['seconds']} s; runs {results[name]['runtime']}", file=sys.stderr, flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--layers", default="memory", help="memory, redis (comma-separated)")
    parser.add_argument("--sets", default="stdlib,fast", help="stdlib, fast (comma-separated)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a figure grew past --margin")
    parser.add_argument("--margin", type=float, default=None, help=f"default: the baseline's, or {MARGIN}")
    parser.add_argument("--update", action="store_true", help="write the measured figures as the baseline")
    parser.add_argument("--stability", action="store_true",
                        help="measure three times, the third with the other core busy; print the spread")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep each phase's callgrind dump, DIR/<layer>-<set>/<target>-<phase>.callgrind")
    parser.add_argument("--baseline", default=str(BASELINE))
    args, sizes = parser.parse_known_args()  # the rest (sizes) goes to the workload
    missing = callgrind.missing_tools()
    if missing:
        print(f"needs {', '.join(missing)} (apt-get install valgrind gcc)", file=sys.stderr)
        return 2
    sets = [s == "fast" for s in args.sets.split(",")]
    if True in sets and deps.missing():
        print(f"the fast set is not installed ({', '.join(deps.missing())}): measuring stdlib only",
              file=sys.stderr)
        sets = [False]
    layers = args.layers.split(",")
    if "redis" in layers and not redis_answers(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")):
        print("Redis does not answer: leaving the redis layer out", file=sys.stderr)
        layers.remove("redis")
    configs = [(layer, fast) for layer in layers for fast in sets]
    env = environment()
    command = "python -m bench.instructions " + " ".join(sys.argv[1:])
    runs: list[dict[str, dict[str, Any]]] = []
    if args.stability:
        runs = [run_all(configs, sizes), run_all(configs, sizes)]
        with Busy():
            runs.append(run_all(configs, sizes))
        print(f"\nThe same workload three times (the third with a busy loop on the other core):\n\n{spread(runs)}")
        results = runs[-1]
    else:
        results = run_all(configs, sizes, args.keep)
    print(f"\nInstructions per unit (callgrind; `{command}`; Python {env['python']}):\n")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "command": command, "sizes": sizes,
                                               "results": results, "runs": runs}, indent=1))
    status = 0
    path = Path(args.baseline)
    if args.update:
        path.write_text(json.dumps({
            "margin": args.margin or MARGIN, "taken": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": command, "environment": env, "sizes": sizes,
            "configs": {config: {label: round(value) for label, value in sorted(r["per_unit"].items())}
                        for config, r in results.items()}}, indent=1) + "\n")
        print(f"\nwrote {path}")
    elif path.exists():
        baseline = json.loads(path.read_text())
        differs = {k: (baseline["environment"].get(k), v) for k, v in env.items()
                   if baseline["environment"].get(k) != v}
        if baseline.get("sizes", []) != sizes:
            differs["sizes"] = (baseline.get("sizes"), sizes)
        print(f"\nAgainst {path.name} ({baseline['taken']}):\n")
        if differs:
            print("not comparable, the baseline was taken with other " + "; ".join(
                f"{k}: {old} (now {new})" for k, (old, new) in differs.items()))
            status = 2
        else:
            status, lines = compare(results, baseline, args.margin or baseline.get("margin", MARGIN))
            print("\n".join(lines))
    return status if args.check else 0


if __name__ == "__main__":
    sys.exit(main())
