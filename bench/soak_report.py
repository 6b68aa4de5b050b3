"""The soak run's figures: the per-minute samples, their slopes after warm-up, the verdicts.

Pure functions over the samples :mod:`bench.soak` takes, so the statistics can be
read and checked apart from the run.

**Slope.** Least squares over the samples taken after the warm-up of the process the
metric belongs to (the web process for RSS and open files, Redis for its keys and
memory): its first minutes, and as long again after each restart of it (a restarted
process fills up the way it did at the start). The warm-up is per process: the web
process's streams are all open within two minutes; Redis holds closed logs for
``CLOSED_TTL``, so its contents reach their steady state only once the first closed
logs expire (and, after a restart, once what it reloaded has turned over). A restart
starts a new segment: the fit has one slope for the whole run and its own level per
segment (a restarted process starts from a new baseline; what matters is whether each
grows).

**Flat** means the slope is within noise. A metric is *growing* (or *shrinking*)
only if both hold: the slope is told apart from zero (its 95 % interval, ± two
standard errors, excludes 0), and the growth it predicts over the measured window
(slope × minutes the segments span) is more than twice the samples' scatter around
the fit (the residual standard deviation). Otherwise it is flat. The first condition
alone calls a plateau of a few quantised values "growing" if one step up happens to
fall late; the second alone calls noise "growing" when the window is cut into
segments. A leak meets both once the run is long enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

#: The sampled metrics: key, label, unit, the process whose restart starts a segment.
METRICS = (
    ("rss_mb", "web RSS", "MB", "web"),
    ("fds", "web open files", "", "web"),
    ("blocks", "web Python blocks", "", "web"),
    ("keys", "Redis keys", "", "redis"),
    ("redis_mb", "Redis used_memory", "MB", "redis"),
)


@dataclass
class Fit:
    """The least-squares slope of one metric after warm-up."""

    metric: str
    samples: int
    mean: float
    #: Units per minute.
    slope: float
    #: Standard error of the slope.
    se: float
    #: Residual standard deviation around the fit.
    noise: float
    #: Minutes spanned by the fitted samples (summed over segments).
    window: float

    @property
    def percent_per_minute(self) -> float:
        return self.slope / self.mean * 100 if self.mean else math.nan

    @property
    def drift(self) -> float:
        """The growth the slope predicts over the measured window."""
        return self.slope * self.window

    @property
    def verdict(self) -> str:
        if self.samples < 4 or math.isnan(self.slope):
            return "too few samples"
        if abs(self.slope) <= 2 * self.se or abs(self.drift) <= 2 * self.noise:
            return "flat"
        return "growing" if self.slope > 0 else "shrinking"


def select(samples: list[dict[str, Any]], key: str, restarts: list[float], warmup: float,
           settle: float | None = None) -> list[tuple[int, float, float]]:
    """(segment, minute, value) of the samples that count for ``key``: after ``warmup``
    minutes, and ``settle`` (default: ``warmup``) minutes after each restart."""
    settle = warmup if settle is None else settle
    points = []
    for sample in samples:
        minute, value = sample["minute"], sample.get(key)
        if value is None or minute < warmup:
            continue
        before = [r for r in restarts if r <= minute]
        if before and minute - before[-1] < settle:
            continue
        points.append((len(before), minute, float(value)))
    return points


def fit(metric: str, points: list[tuple[int, float, float]]) -> Fit:
    """One slope for all segments, each segment with its own level (see the module doc)."""
    by_segment: dict[int, list[tuple[float, float]]] = {}
    for segment, x, y in points:
        by_segment.setdefault(segment, []).append((x, y))
    sxx = sxy = 0.0
    centred = []
    for pairs in by_segment.values():
        mx = sum(x for x, _ in pairs) / len(pairs)
        my = sum(y for _, y in pairs) / len(pairs)
        for x, y in pairs:
            centred.append((x - mx, y - my))
            sxx += (x - mx) ** 2
            sxy += (x - mx) * (y - my)
    n = len(points)
    mean = sum(y for _, _, y in points) / n if n else math.nan
    window = sum(max(x for x, _ in p) - min(x for x, _ in p) for p in by_segment.values())
    freedom = n - len(by_segment) - 1
    if not sxx or freedom < 1:
        return Fit(metric, n, mean, math.nan, math.nan, math.nan, window)
    slope = sxy / sxx
    residual = sum((dy - slope * dx) ** 2 for dx, dy in centred)
    noise = math.sqrt(residual / freedom)
    return Fit(metric, n, mean, slope, noise / math.sqrt(sxx), noise, window)


def fits(samples: list[dict[str, Any]], restarts: dict[str, list[float]],
         warmup: dict[str, float], settle: float | None = None) -> list[Fit]:
    """The fit of every metric of :data:`METRICS`; ``restarts`` and ``warmup`` hold
    minutes per process ("web", "redis"); ``settle`` (default: the warm-up) after a restart.
    Metrics no sample has (an older run's) are left out."""
    return [fit(label, select(samples, key, restarts.get(process, []), warmup[process], settle))
            for key, label, _, process in METRICS if any(key in s for s in samples)]


def _cell(value: Any, spec: str = ".1f") -> str:
    if value is None:
        return "–"
    return format(value, spec) if isinstance(value, float) else str(value)


def samples_table(samples: list[dict[str, Any]]) -> str:
    """The samples as a Markdown table."""
    rows = ["| minute | web RSS MB | web open files | web Python blocks | streams (server) "
            "| running executions | Redis keys | Redis used_memory MB | events delivered |",
            "|---|---|---|---|---|---|---|---|---|"]
    for s in samples:
        rows.append(f"| {s['minute']:.1f} | {_cell(s.get('rss_mb'))} | {_cell(s.get('fds'))} | "
                    f"{_cell(s.get('blocks'))} | "
                    f"{_cell(s.get('streams'))} | {_cell(s.get('running'))} | "
                    f"{_cell(s.get('keys'))} | {_cell(s.get('redis_mb'), '.2f')} | "
                    f"{_cell(s.get('delivered'))} |")
    return "\n".join(rows)


def slopes_table(results: list[Fit]) -> str:
    """The fits as a Markdown table, with their verdicts."""
    rows = ["| metric | samples | mean | slope / min (± 2 SE) | % of mean / min | "
            "growth over window | 2 × noise | verdict |",
            "|---|---|---|---|---|---|---|---|"]
    for f in results:
        rows.append(f"| {f.metric} | {f.samples} | {f.mean:.2f} | {f.slope:+.4f} (± {2 * f.se:.4f}) "
                    f"| {f.percent_per_minute:+.3f} % | {f.drift:+.3f} over {f.window:.0f} min | "
                    f"{2 * f.noise:.3f} | {f.verdict} |")
    return "\n".join(rows)


def summary(fits_: list[Fit], lost: int, unended: int, extra: Optional[dict[str, Any]] = None) -> str:
    """The verdict lines: each metric, then events lost and executions that did not end."""
    lines = [f"- {f.metric}: {f.verdict} ({f.percent_per_minute:+.3f} % of mean per minute)"
             for f in fits_]
    lines.append(f"- lost events: {lost} ({'OK' if lost == 0 else 'FAILED'})")
    lines.append(f"- executions not ended: {unended} ({'OK' if unended == 0 else 'FAILED'})")
    for key, value in (extra or {}).items():
        lines.append(f"- {key}: {value}")
    return "\n".join(lines)
