"""Weekly schedules and holidays, evaluated in the site's time zone. Pure.

A schedule is a set of windows per weekday at minute resolution, written like

    {"mon-fri": ["07:00-18:00"], "sat": ["09:00-13:00"], "sun": ["22:00-02:00"]}

A window whose end is before its start crosses midnight: "22:00-02:00" on Sunday
also covers Monday 00:00-02:00. "24:00" may end a window. Windows are checked
when a schedule is made (never at the door): a window that starts and ends at
the same minute, overlapping windows, unknown days and bad times are refused
with the reason.

Holidays are dates (in the site's time zone) that switch a schedule off, or
swap in another schedule for the day: {"2026-12-25": "off", "2026-12-24":
"short-day"}. The part of a window that crosses midnight belongs to the day it
started on.

Evaluation takes a UTC instant and turns it into local wall time with zoneinfo,
so a window "07:00-18:00" means 07:00-18:00 on the wall clock all year, across
DST changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import AccessdError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


class PolicyError(AccessdError, ValueError):
    """A schedule, holiday or time zone definition is wrong; the message says where."""


@dataclass(frozen=True)
class Window:
    day: int        # 0 = Monday
    start: int      # minute of the day, 0-1439
    end: int        # minute of the day, 1-1440; end <= start crosses midnight

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def spans(self) -> list[tuple[int, int, int]]:
        """(day, start, end) pieces that do not cross midnight."""
        if not self.crosses_midnight:
            return [(self.day, self.start, self.end)]
        return [(self.day, self.start, 1440), ((self.day + 1) % 7, 0, self.end)]


@dataclass(frozen=True)
class Schedule:
    name: str
    windows: tuple[Window, ...]

    def to_spec(self) -> dict:
        out: dict[str, list[str]] = {}
        for w in self.windows:
            out.setdefault(DAYS[w.day], []).append(f"{_hhmm(w.start)}-{_hhmm(w.end)}")
        return out


@dataclass(frozen=True)
class Policy:
    tz: str
    schedules: dict[str, Schedule]
    holidays: dict[str, str]  # ISO date -> "off" or a schedule name

    def to_json(self) -> dict:
        return {"tz": self.tz, "schedules": {n: s.to_spec() for n, s in self.schedules.items()},
                "holidays": dict(self.holidays)}


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _minute(text: str, where: str, *, end: bool = False) -> int:
    m = _TIME.match(text.strip())
    if not m:
        raise PolicyError(f"{where}: {text!r} is not a time (HH:MM)")
    h, mi = int(m.group(1)), int(m.group(2))
    if mi > 59 or h > 24 or (h == 24 and (mi or not end)):
        raise PolicyError(f"{where}: {text!r} is not a time of day (00:00-23:59, or 24:00 "
                          "to end a window)")
    return h * 60 + mi


def _days(key: str, where: str) -> list[int]:
    key = key.strip().lower()
    if key in ("daily", "all", "mon-sun"):
        return list(range(7))
    if key in ("weekdays",):
        return list(range(5))
    if key in ("weekends",):
        return [5, 6]
    if "-" in key:
        a, b = key.split("-", 1)
        if a not in DAYS or b not in DAYS:
            raise PolicyError(f"{where}: unknown day range {key!r} (use mon-fri, sat, sun, ...)")
        i, j = DAYS.index(a), DAYS.index(b)
        return list(range(i, j + 1)) if i <= j else list(range(i, 7)) + list(range(0, j + 1))
    if key not in DAYS:
        raise PolicyError(f"{where}: unknown day {key!r} (use mon, tue, ... or mon-fri)")
    return [DAYS.index(key)]


def parse_schedule(name: str, spec: dict) -> Schedule:
    """Build a schedule from its spec, refusing inverted, empty or overlapping windows."""
    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,31}$", name or ""):
        raise PolicyError(f"schedule name {name!r}: 1-32 lower-case letters, digits, - or _")
    if not isinstance(spec, dict) or not spec:
        raise PolicyError(f"schedule {name!r}: needs at least one day with windows")
    windows: list[Window] = []
    for key, items in spec.items():
        where = f"schedule {name!r}, {key}"
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not items:
            raise PolicyError(f"{where}: give windows like [\"07:00-18:00\"]")
        for item in items:
            if not isinstance(item, str) or item.count("-") != 1:
                raise PolicyError(f"{where}: {item!r} is not a window (HH:MM-HH:MM)")
            a, b = item.split("-")
            start, end = _minute(a, where), _minute(b, where, end=True)
            if start == end % 1440 and end != 1440:
                raise PolicyError(f"{where}: window {item!r} starts and ends at the same time")
            for day in _days(key, where):
                windows.append(Window(day, start, end))
    spans = sorted(s for w in windows for s in w.spans())
    for (d1, s1, e1), (d2, s2, e2) in zip(spans, spans[1:]):
        if d1 == d2 and s2 < e1:
            raise PolicyError(f"schedule {name!r}: windows overlap on {DAYS[d1]} "
                              f"({_hhmm(s1)}-{_hhmm(e1)} and {_hhmm(s2)}-{_hhmm(e2)})")
    return Schedule(name, tuple(sorted(windows, key=lambda w: (w.day, w.start))))


def check_timezone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(f"unknown time zone {tz!r} (use an IANA name like Europe/Oslo)") from None
    return tz


def check_holiday(day: str, value: str, schedules) -> tuple[str, str]:
    try:
        d = date.fromisoformat(day)
    except ValueError:
        raise PolicyError(f"holiday {day!r} is not a date (YYYY-MM-DD)") from None
    if value != "off" and value not in schedules:
        raise PolicyError(f"holiday {day}: {value!r} is neither 'off' nor a schedule")
    return d.isoformat(), value


def policy_from_json(doc: dict | None) -> Policy | None:
    """The policy shipped in a bundle (already checked at the office)."""
    if not doc:
        return None
    schedules = {n: parse_schedule(n, spec) for n, spec in doc.get("schedules", {}).items()}
    return Policy(check_timezone(doc.get("tz", "UTC")), schedules, dict(doc.get("holidays", {})))


def _open_in(schedule: Schedule, day: int, minute: int, *, tail: bool) -> bool:
    """Is `minute` on weekday `day` inside the schedule? tail=True looks only at the
    after-midnight part of windows that started the day before; False at the rest."""
    for w in schedule.windows:
        for d, s, e in w.spans():
            is_tail = w.crosses_midnight and d != w.day
            if is_tail == tail and d == day and s <= minute < e:
                return True
    return False


def in_schedule(policy: Policy, name: str, when_utc: float) -> bool:
    """Is the schedule `name` open at this instant, in the policy's time zone?"""
    local = datetime.fromtimestamp(when_utc, ZoneInfo(policy.tz))
    today, minute, weekday = local.date(), local.hour * 60 + local.minute, local.weekday()
    yesterday = today - timedelta(days=1)
    for day, tail in ((today, False), (yesterday, True)):
        sched = _effective(policy, name, day)
        if sched is not None and _open_in(sched, weekday, minute, tail=tail):
            return True
    return False


def _effective(policy: Policy, name: str, day: date) -> Schedule | None:
    """The schedule that applies on `day`: off, swapped, or itself."""
    swap = policy.holidays.get(day.isoformat())
    if swap == "off":
        return None
    return policy.schedules.get(swap or name)
