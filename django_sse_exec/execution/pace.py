"""Rate and time left of one progress counter: smoothed, and absent until they mean something.

A producer reports ``progress(current, total)`` at irregular times; people want
"1,240 rows/s, about 2 min left". The raw rate between two reports jumps (a
slow row, a burst after a pause), so :class:`Pace` smooths it with an
exponentially weighted moving average whose weight depends on the time between
reports (``1 - exp(-dt / TIME_CONSTANT)``): a report after a long gap counts
for more than one a millisecond after the last, and the estimate follows a real
change of speed within about :data:`TIME_CONSTANT` seconds.

Two figures come out, both absent until they mean something:

* ``rate`` — units of ``current`` per second, once there are :data:`MIN_REPORTS`
  reports spanning at least :data:`MIN_SPAN` seconds (a first burst says
  nothing about the speed);
* ``eta`` — whole seconds until the subject ends, from the smoothed speed of its
  *fraction done* (which nested steps roll up, see :mod:`.steps`), under the
  same condition, and only when the fraction is known (a total was given) and
  moving (a speed above zero); ``0`` once the fraction reaches 1.

A counter that goes backwards (a new phase counting from 0 again) starts a new
estimate. Pure: the caller passes the time (``time.monotonic()``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Seconds over which the smoothed speed forgets an old one (to about a third).
TIME_CONSTANT = 5.0
#: Reports needed before a rate or a time left is given.
MIN_REPORTS = 3
#: Seconds the reports must span before a rate or a time left is given.
MIN_SPAN = 1.0
#: Longest time left given, in seconds (beyond it: absent, the speed says nothing useful).
MAX_ETA = 366 * 24 * 3600


def _smooth(old: float | None, new: float, weight: float) -> float:
    return new if old is None else old + weight * (new - old)


def rounded(value: float) -> float:
    """``value`` to three significant figures (what a rate is worth showing)."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    return float(round(value, 2 - int(math.floor(math.log10(abs(value))))))


@dataclass
class Pace:
    """The smoothed speed of one counter and of its fraction done."""

    #: Time of the first report of the current estimate, and of the last one.
    first_at: float | None = None
    last_at: float = 0.0
    last_current: float | None = None
    last_fraction: float | None = None
    reports: int = 0
    #: Smoothed units of ``current`` per second.
    rate: float | None = None
    #: Smoothed fraction per second.
    speed: float | None = None

    def restart(self, now: float, current: float | None, fraction: float | None) -> None:
        """Forget the estimate; ``now`` is its first report."""
        self.first_at, self.last_at, self.reports = now, now, 1
        self.last_current, self.last_fraction = current, fraction
        self.rate = self.speed = None

    def observe(self, now: float, current: float | None,
                fraction: float | None) -> dict[str, Any]:
        """Take one report; return the figures to publish (``rate``, ``eta``, or neither).

        ``current`` is the counter (None: a report with no counter of its own, such
        as a step's boundary, which only moves the fraction); ``fraction`` is the
        subject's share done, 0 to 1 (None when no total is known).
        """
        backwards = (current is not None and self.last_current is not None
                     and current < self.last_current) or (
            fraction is not None and self.last_fraction is not None
            and fraction < self.last_fraction - 1e-9)
        if self.first_at is None or backwards:
            self.restart(now, current, fraction)
            return self.figures(now, fraction)
        dt = now - self.last_at
        if dt <= 0:
            return self.figures(now, fraction)
        weight = 1.0 - math.exp(-dt / TIME_CONSTANT)
        if current is not None:
            if self.last_current is not None:
                self.rate = _smooth(self.rate, (current - self.last_current) / dt, weight)
            self.last_current = current
        if fraction is not None:
            if self.last_fraction is not None:
                self.speed = _smooth(self.speed, (fraction - self.last_fraction) / dt, weight)
            self.last_fraction = fraction
        self.last_at = now
        self.reports += 1
        return self.figures(now, fraction)

    def meaningful(self, now: float) -> bool:
        """Enough reports over enough time for an estimate."""
        return (self.first_at is not None and self.reports >= MIN_REPORTS
                and now - self.first_at >= MIN_SPAN)

    def figures(self, now: float, fraction: float | None) -> dict[str, Any]:
        """``rate`` and ``eta`` as they stand (each only when it means something)."""
        if not self.meaningful(now):
            return {}
        found: dict[str, Any] = {}
        if self.rate is not None:
            found["rate"] = rounded(max(0.0, self.rate))
        if fraction is not None:
            if fraction >= 1:
                found["eta"] = 0
            elif self.speed is not None and self.speed > 0:
                eta = (1.0 - fraction) / self.speed
                if eta <= MAX_ETA:
                    found["eta"] = math.ceil(eta)
        return found


__all__ = ["MAX_ETA", "MIN_REPORTS", "MIN_SPAN", "Pace", "TIME_CONSTANT", "rounded"]
