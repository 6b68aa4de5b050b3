"""Nested, weighted steps of one subject (a task, or the execution), rolled up into one fraction.

``with reporter.step("download", weight=3): ...`` then ``with
reporter.step("parse"): ...``: the subject's fraction done is the weighted mean
of its steps' fractions (an ended step counts 1, a running one what its own
progress or its own steps say, one not started yet 0). Steps nest: a step's
fraction is the same mean over its own steps, or, when it has none, its last
``progress(current, total)``.

A mean needs every weight: a step's siblings count once they have started *or
were declared* (``plan={"download": 3, "parse": 1}`` on the reporter, or
``steps={...}`` on a step). Without a plan the fraction can go back when a new
step starts (the whole grows); declare the steps up front to avoid it.

Steps of the same name among siblings are told apart by their order
(``download``, ``download#2``), which a re-run repeats, so the reporter's keys
(:mod:`.keys`) stay the same. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Step:
    """One step (the root is the subject itself)."""

    name: str
    weight: float = 1.0
    #: Its own last ``progress`` (0 to 1), used when it has no steps of its own.
    own: float = 0.0
    ended: bool = False
    started: bool = False
    children: list["Step"] = field(default_factory=list)

    def fraction(self) -> float:
        """Its share done, 0 to 1."""
        if self.ended:
            return 1.0
        total = sum(child.weight for child in self.children)
        if total <= 0:
            return min(1.0, max(0.0, self.own))
        return min(1.0, sum(child.weight * child.fraction() for child in self.children) / total)

    def plan(self, weights: dict[str, float]) -> None:
        """Declare steps not started yet (their weights count in the mean from now on)."""
        for name, weight in weights.items():
            self.children.append(Step(name, checked_weight(weight)))

    def start(self, name: str, weight: float | None) -> "Step":
        """Start the child ``name``: the first declared one of that name not started yet, else
        a new one (its ``weight`` defaults to the declared one, else 1)."""
        for child in self.children:
            if child.name == name and not child.started:
                child.started = True
                if weight is not None:
                    child.weight = checked_weight(weight)
                return child
        child = Step(name, 1.0 if weight is None else checked_weight(weight), started=True)
        self.children.append(child)
        return child

    def label(self, child: "Step") -> str:
        """``name``, or ``name#n`` for the n-th started step of that name among its siblings."""
        same = [c for c in self.children if c.name == child.name and c.started]
        number = same.index(child) + 1
        return child.name if number == 1 else f"{child.name}#{number}"


def checked_weight(weight: float) -> float:
    """A step's weight: a finite number above zero."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
            0 < weight < float("inf")):
        raise ValueError(f"a step's weight must be a number above 0, not {weight!r}")
    return float(weight)


class StepTree:
    """The steps of one subject and which of them runs now (innermost last)."""

    def __init__(self) -> None:
        self.root = Step("")
        self.root.started = True
        self.open: list[Step] = [self.root]
        #: Labels of the open steps, outermost first (``["parse", "read#2"]``).
        self.path: list[str] = []

    @property
    def current(self) -> Step:
        return self.open[-1]

    def enter(self, name: str, weight: float | None = None,
              steps: dict[str, float] | None = None) -> None:
        """Start step ``name`` inside the current one; ``steps`` declares its own steps."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a step's name must be a non-empty str, not {name!r}")
        parent = self.current
        child = parent.start(name, weight)
        if steps:
            child.plan(steps)
        self.open.append(child)
        self.path.append(parent.label(child))

    def leave(self) -> None:
        """End the current step (it counts as done)."""
        if len(self.open) == 1:
            raise RuntimeError("no step is open")
        self.open.pop().ended = True
        self.path.pop()

    def progress(self, fraction: float) -> None:
        """The current step's own progress (0 to 1)."""
        self.current.own = min(1.0, max(0.0, fraction))

    def fraction(self) -> float:
        """The subject's share done, every step rolled up."""
        return self.root.fraction()


__all__ = ["Step", "StepTree", "checked_weight"]
