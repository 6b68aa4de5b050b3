"""Instruction counts of marked phases of a Python process, from valgrind's callgrind.

Callgrind counts the instructions a process executes: the same program on the
same input gives the same count, however loaded the machine is, so a change's
effect shows exactly. A workload marks its phases with :class:`Marks`:
``start()`` once its warm-up is over, then ``dump(label)`` at the end of each
phase. Those are callgrind's client requests (``CALLGRIND_START_INSTRUMENTATION``
and ``CALLGRIND_DUMP_STATS_AT``, from ``valgrind/callgrind.h``), compiled once
into a tiny shared library loaded with ctypes; outside valgrind they do nothing,
so the same workload also runs natively. Each dump holds the instructions of
every thread since the previous one; :func:`measure` runs a command under
callgrind (instrumentation off until ``start()``, so imports and start-up run
at valgrind's faster uninstrumented speed) and returns ``{label: instructions}``.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Environment variable that hands the compiled library to the measured process.
ENV = "BENCH_CALLGRIND_MARKS"

SOURCE = r"""
#include <valgrind/callgrind.h>
void sse_bench_start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void sse_bench_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""


class Marks:
    """A workload's phase marks; no-ops unless :data:`ENV` names the compiled library."""

    def __init__(self, library: str | None = None) -> None:
        path = library if library is not None else os.environ.get(ENV)
        self._lib = ctypes.CDLL(path) if path else None

    def start(self) -> None:
        """Start counting (and zero what was counted so far)."""
        if self._lib is not None:
            self._lib.sse_bench_start()

    def dump(self, label: str) -> None:
        """End a phase: its instructions are written under ``label``, and counting restarts."""
        if self._lib is not None:
            self._lib.sse_bench_dump(label.encode())


def missing_tools() -> list[str]:
    """What :func:`measure` needs and this machine lacks (valgrind, a C compiler, the header)."""
    out = [tool for tool in ("valgrind", "cc") if shutil.which(tool) is None]
    if not Path("/usr/include/valgrind/callgrind.h").exists():
        out.append("valgrind/callgrind.h")
    return out


def build_marks(directory: Path) -> Path:
    """Compile :data:`SOURCE` into ``directory``; the library's path."""
    source, library = directory / "marks.c", directory / "marks.so"
    source.write_text(SOURCE)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library


_TRIGGER = re.compile(r"^desc: Trigger: Client Request: (.*)$", re.M)
_TOTALS = re.compile(r"^totals: (\d+)$", re.M)


def parse_dumps(directory: Path, keep: Path | None = None) -> dict[str, int]:
    """``{label: instructions}`` of the dumps in ``directory`` (labels must be unique).

    With ``keep``, each phase's dump is also copied there as ``<label>.callgrind``
    (``/`` in a label becomes ``-``), for ``callgrind_annotate``.
    """
    counts: dict[str, int] = {}
    for path in directory.glob("cg.out.*"):
        text = path.read_text(errors="replace")
        trigger, totals = _TRIGGER.search(text), _TOTALS.search(text)
        if trigger is None or totals is None:
            continue  # the dump at exit
        label = trigger.group(1).strip()
        if label in counts:
            raise ValueError(f"two phases are labelled {label!r}")
        counts[label] = int(totals.group(1))
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, keep / f"{label.replace('/', '-')}.callgrind")
    return counts


def measure(command: list[str], env: dict[str, str], timeout: float = 900,
            keep: Path | None = None) -> tuple[dict[str, int], str]:
    """Run ``command`` under callgrind; the instructions of each phase it marked, and its stdout.

    ``keep``: a directory to copy each phase's dump to (see :func:`parse_dumps`).
    Raises ``subprocess.CalledProcessError`` (with its output) if it fails.
    """
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        directory = Path(tmp)
        library = build_marks(directory)
        full = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={directory}/cg.out.%p", *command]
        done = subprocess.run(full, env={**env, ENV: str(library)}, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, full, done.stdout, done.stderr)
        return parse_dumps(directory, keep), done.stdout


__all__ = ["ENV", "Marks", "build_marks", "measure", "missing_tools", "parse_dumps"]
