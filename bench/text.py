"""How the benchmarks compute and print a figure: one percentile, one formatter for every table."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, spec: str = ".0f") -> str:
    """``value`` formatted with ``spec``; "–" for a missing or NaN figure."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return format(value, spec)


def pct(values: Any, q: float) -> float:
    """The ``q`` quantile of ``values`` (NaN when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
