"""Text a command prints but did not write, made safe for a terminal.

``sse_tail`` prints what producers sent (event data) and, with ``--url``, what
a remote server wrote (its ``id:`` and ``event:`` lines, its error bodies).
Printed raw, an escape sequence in any of them could move the cursor, rewrite
earlier lines, set the window title or (on some terminals) answer back; a C1
control such as U+009B is CSI on its own; and bidirectional overrides can make
a line read differently from what it holds. :func:`escape_controls` turns every
such character into a visible escape, so what is printed is exactly what was
received, and nothing more.
"""

from __future__ import annotations

import re

#: Characters never printed as they are: C0 controls (tab and newline too: one
#: event is one line), DEL, C1 controls, the line and paragraph separators, and
#: the bidirectional marks, embeddings, overrides and isolates.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str, *, json: bool = False) -> str:
    """``text`` with every :data:`UNSAFE` character escaped.

    As ``\\xNN`` (below U+0100) or ``\\uNNNN``; with ``json``, always
    ``\\uNNNN``, so that a line of JSON stays valid JSON meaning the same
    (JSON encoders already escape the C0 controls, not DEL, C1 or bidi ones).
    Other characters, backslashes included, are left as they are.
    """

    def escaped(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\u{code:04x}" if json or code > 0xFF else f"\\x{code:02x}"

    return UNSAFE.sub(escaped, text)


__all__ = ["UNSAFE", "escape_controls"]
