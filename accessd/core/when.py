"""Times as staff write and read them: in a named time zone (the site's), with a
date-only end meaning the end of that day. Pure: `now` is an argument.

  parse("2026-12-31", tz)            -> 2026-12-31 00:00 in tz (the day's start)
  parse("2026-12-31", tz, end=True)  -> 2027-01-01 00:00 in tz (the day's end)
  parse("2026-12-31T18:00", tz)      -> 18:00 in tz (an offset in the text wins)
  parse("7d", tz, now=t)             -> t + 7 days (ago with past=True)

  fmt(t, tz)                         -> "2026-12-31 18:00"
  fmt(t, tz, end=True)               -> "2026-12-31 24:00" for the day's end
  fmt_iso("2026-12-31T17:00:00.000Z", "Europe/Oslo") -> "2026-12-31 18:00:00"

An end is stored as the first instant it no longer holds (the door denies at
`now >= valid_until`), so "valid until 2026-12-31" works through the 31st.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_REL = re.compile(r"^\+?(\d{1,6})\s*([smhdw])$")
# The times accessd takes: 1970-01-01 to the end of 9999-12-31 (UTC). Whatever staff
# type, a CSV holds or a library caller passes is checked against this once, where
# it enters (check_epoch); "no end" is an empty field, not a far date.
MIN_EPOCH = 0.0
MAX_EPOCH = 253402300800.0       # 10000-01-01T00:00Z: the end of 9999-12-31
RANGE_WORDS = "from 1970-01-01 to 9999-12-31 (for no end, leave the end out)"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
FORMS = "2026-12-31, 2026-12-31T18:00 or 7d / 12h / 30m"


def zone(tz: str | None) -> tzinfo | None:
    """The zone named (IANA), or None for this machine's local time."""
    if not tz:
        return None
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None


def _midnight(day: date, z: tzinfo | None) -> float:
    dt = datetime.combine(day, time(0))
    return (dt.replace(tzinfo=z) if z is not None else dt.astimezone()).timestamp()


def is_relative(text: str) -> bool:
    """'7d', '12h': a time relative to now (not a date, e.g. for a file's column)."""
    return bool(_REL.match(text.strip()))


def check_epoch(t: float, what: str = "time") -> float:
    """`t` if it is a time accessd takes, else ValueError saying the range."""
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not MIN_EPOCH <= t <= MAX_EPOCH:
        raise ValueError(f"{what} must be {RANGE_WORDS}")
    return float(t)


def parse(text: str, tz: str | None, *, end: bool = False, past: bool = False,
          now: float) -> float:
    """UTC epoch for what staff typed; ValueError naming the accepted forms or the
    supported range (RANGE_WORDS)."""
    text = text.strip()
    m = _REL.match(text)
    if m:
        delta = int(m.group(1)) * _UNITS[m.group(2)]
        return _in_range(now - delta if past else now + delta, text)
    z = zone(tz)
    if _DATE.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a date (no such day)") from None
        if not 1970 <= day.year <= 9999:
            raise ValueError(f"{text!r}: dates are {RANGE_WORDS}")
        if end and day == date.max:       # the day after 9999-12-31 is not a date
            return _in_range(_midnight(day, z) + 86400, text)
        return _in_range(_midnight(day + timedelta(days=1) if end else day, z), text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use {FORMS}") from None
    if not 1970 <= dt.year <= 9999:
        raise ValueError(f"{text!r}: dates are {RANGE_WORDS}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=z) if z is not None else dt.astimezone()
    try:
        return _in_range(dt.timestamp(), text)
    except (OverflowError, OSError):
        raise ValueError(f"{text!r}: dates are {RANGE_WORDS}") from None


def _in_range(t: float, text: str) -> float:
    if not MIN_EPOCH <= t <= MAX_EPOCH:
        raise ValueError(f"{text!r}: dates are {RANGE_WORDS}")
    return t


def _local(epoch: float, tz: str | None) -> datetime:
    """The instant in tz (this machine's local time for None)."""
    return datetime.fromtimestamp(epoch, timezone.utc).astimezone(zone(tz))


def fmt(epoch: float | None, tz: str | None, *, end: bool = False,
        seconds: bool = False) -> str:
    """'2026-12-31 18:00' in tz ('-' for None); an end at midnight reads as 24:00 of
    the day before, so a pass valid through the 31st shows 2026-12-31 24:00."""
    if epoch is None:
        return "-"
    try:
        dt = _local(epoch, tz)
    except (OverflowError, OSError, ValueError):
        if end and MAX_EPOCH - 2 * 86400 <= epoch <= MAX_EPOCH:
            return "9999-12-31 24:00"              # the last day's end, east of UTC
        return f"(out of range: {epoch!r})"       # stored before times were checked
    clock = "%H:%M:%S" if seconds else "%H:%M"
    if end and (dt.hour, dt.minute, dt.second, dt.microsecond) == (0, 0, 0, 0):
        return (dt - timedelta(days=1)).strftime("%Y-%m-%d ") + ("24:00:00" if seconds
                                                                 else "24:00")
    return dt.strftime(f"%Y-%m-%d {clock}")


def from_iso(ts: str) -> float:
    """A log record's UTC timestamp text (2026-11-21T18:00:00.000Z, or a prefix of it
    such as 2026-11-21T18:00) as epoch seconds; ValueError if it is not one."""
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)).timestamp()


def fmt_iso(ts: str, tz: str | None) -> str:
    """A log record's UTC timestamp in tz, to the second (the text itself if it is not
    a timestamp: a record is shown, never dropped, over its time)."""
    try:
        return fmt(from_iso(ts), tz, seconds=True)
    except ValueError:
        return ts


def day(epoch: float, tz: str | None) -> str:
    """The calendar day (YYYY-MM-DD) of an instant in tz."""
    return _local(epoch, tz).strftime("%Y-%m-%d")
