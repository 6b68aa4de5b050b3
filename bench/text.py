"""How the benchmarks print a figure: one formatter for every table they write."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, spec: str = ".0f") -> str:
    """``value`` formatted with ``spec``; "–" for a missing or NaN figure."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return format(value, spec)
