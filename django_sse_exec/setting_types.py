"""The kinds of value an ``SSE_EXEC`` key accepts, each with the words that name it.

:mod:`django_sse_exec.conf` builds every setting's spec from these, so the test a
value must pass and the expected form that an error message (and the settings
reference) prints come from one place and cannot disagree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The id of the system check that reports a value outside its spec.
CHECK_ID = "django_sse_exec.E016"

#: A test a value must pass, and how the expected form reads in messages.
Rule = tuple[Callable[[Any], bool], str]

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


@dataclass(frozen=True)
class Setting:
    """One key of ``SSE_EXEC``: default, accepted values, and its documentation.

    ``check_id`` names the system check that reports an invalid value: the generic
    ``E016`` unless an older, dedicated check covers the key with the same
    condition as ``accepts``.
    """

    default: Any
    accepts: Callable[[Any], bool]
    expected: str
    description: str
    check_id: str = CHECK_ID


def spec(default: Any, rule: Rule, description: str, check_id: str = CHECK_ID) -> Setting:
    """A :class:`Setting`; the description's line breaks are folded into one paragraph."""
    accepts, expected = rule
    assert accepts(default), f"the default {default!r} is not {expected}"
    return Setting(default, accepts, expected, " ".join(description.split()), check_id)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def seconds(*, optional: bool = False, zero: bool = False) -> Rule:
    """A finite number of seconds above 0 (from 0 with ``zero``), or None with ``optional``."""
    def accepts(value: Any) -> bool:
        return (optional and value is None) or (_number(value) and (value >= 0 if zero else value > 0))

    form = f"a number of seconds {'>= 0' if zero else '> 0'}"
    return accepts, f"None or {form}" if optional else form


def fraction() -> Rule:
    """A number from 0 up to (not including) 1."""
    return (lambda value: _number(value) and 0 <= value < 1), "a number >= 0 and < 1"


def whole(low: int, high: int | None = None, *, optional: bool = False, unit: str = "") -> Rule:
    """A whole number (not a bool) in ``[low, high]``, or None with ``optional``."""
    def accepts(value: Any) -> bool:
        return (optional and value is None) or (
            isinstance(value, int) and not isinstance(value, bool)
            and value >= low and (high is None or value <= high))

    bounds = f"from {low} to {high}" if high is not None else f">= {low}"
    form = f"a whole number of {unit} {bounds}" if unit else f"a whole number {bounds}"
    return accepts, f"None or {form}" if optional else form


def choice_or_path(*choices: str, call: bool = False) -> Rule:
    """One of ``choices``, a dotted import path, or (with ``call``) a callable."""
    def accepts(value: Any) -> bool:
        if call and callable(value):
            return True
        return isinstance(value, str) and (value in choices or bool(_DOTTED.fullmatch(value)))

    names = "".join(f'"{choice}", ' for choice in choices)
    return accepts, f"{names}a dotted import path{' or a callable' if call else ''}"


def flag_or_prefixes() -> Rule:
    """``True``, ``False``, or a list (or tuple) of non-empty str prefixes."""
    def accepts(value: Any) -> bool:
        return isinstance(value, bool) or (isinstance(value, (list, tuple)) and all(
            isinstance(prefix, str) and prefix for prefix in value))

    return accepts, "True, False or a list of dotted-path prefixes (str)"


def text(pattern: str, form: str) -> Rule:
    """A str matching ``pattern`` whole."""
    compiled = re.compile(pattern)
    return (lambda value: isinstance(value, str) and bool(compiled.fullmatch(value))), form


def redis_url() -> Rule:
    """None, or a ``redis://``, ``rediss://`` or ``unix://`` URL."""
    def accepts(value: Any) -> bool:
        return value is None or (isinstance(value, str)
                                 and value.startswith(("redis://", "rediss://", "unix://")))

    return accepts, "None or a redis://, rediss:// or unix:// URL"


__all__ = ["CHECK_ID", "Rule", "Setting", "choice_or_path", "flag_or_prefixes", "fraction", "redis_url",
           "seconds", "spec", "text", "whole"]
