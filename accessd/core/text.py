"""Text that people type and text that comes from elsewhere, made safe for a log line
and a terminal. Pure.

`check_text` is the guard where a name, unit, phone, label, description or note
enters: control characters (a newline would let a resident's name print a fake
ALARM line in `watch --plain`; a NUL is refused by PostgreSQL) and oversized
values are refused, naming what and where. `printable` is for foreign text
(a store server's reply, a reader's frame, a door's log record at the office):
it keeps the text readable and escapes what could forge a line.
"""

from __future__ import annotations

import unicodedata

# line and paragraph separators end a line in many terminals and viewers too
_BREAKS = {"\u2028", "\u2029", "\u0085"}


def _bad(c: str) -> bool:
    return unicodedata.category(c) == "Cc" or c in _BREAKS


def printable(text: str, limit: int | None = None) -> str:
    """`text` with control characters escaped (\\n, \\x00, \\u2028), cut to `limit`."""
    out = []
    for c in str(text):
        if _bad(c):
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c) or
                       (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"))
        else:
            out.append(c)
    s = "".join(out)
    return s if limit is None or len(s) <= limit else s[:limit - 1] + "…"


def check_text(what: str, value, max_len: int, *, required: bool = False) -> str:
    """The value stripped, or ValueError: not text, empty when required, longer than
    max_len, or holding a control character (named, with its position)."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    value = value.strip()
    if required and not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > max_len:
        raise ValueError(f"{what} is {len(value)} characters long; at most {max_len}")
    for i, c in enumerate(value):
        if _bad(c):
            raise ValueError(f"{what} contains a control character (U+{ord(c):04X}) at "
                             f"position {i + 1}: type it on one line, without tabs")
    return value
