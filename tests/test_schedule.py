"""Schedules across midnight and DST, holidays, and bad definitions (hypothesis)."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import re

import pytest
from hypothesis import given, settings, strategies as st

from accessd.core.schedule import (Policy, PolicyError, check_holiday, check_timezone,
                                   in_schedule, parse_schedule)

OSLO = "Europe/Oslo"


def policy(specs, holidays=None, tz=OSLO):
    return Policy(tz, {n: parse_schedule(n, s) for n, s in specs.items()}, holidays or {})


def at(y, mo, d, h, mi, tz=OSLO):
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz)).timestamp()


def test_weekday_windows():
    p = policy({"day": {"mon-fri": ["07:00-18:00"], "sat": "09:00-13:00"}})
    assert in_schedule(p, "day", at(2026, 11, 23, 7, 0))        # Monday 07:00
    assert not in_schedule(p, "day", at(2026, 11, 23, 6, 59))
    assert in_schedule(p, "day", at(2026, 11, 23, 17, 59))
    assert not in_schedule(p, "day", at(2026, 11, 23, 18, 0))   # end is exclusive
    assert in_schedule(p, "day", at(2026, 11, 28, 12, 0))       # Saturday
    assert not in_schedule(p, "day", at(2026, 11, 29, 12, 0))   # Sunday


def test_window_crossing_midnight_belongs_to_its_start_day():
    p = policy({"night": {"sun": ["22:00-02:00"]}})
    assert in_schedule(p, "night", at(2026, 11, 29, 23, 0))     # Sunday night
    assert in_schedule(p, "night", at(2026, 11, 30, 1, 59))     # Monday, early
    assert not in_schedule(p, "night", at(2026, 11, 30, 2, 0))
    assert not in_schedule(p, "night", at(2026, 11, 24, 1, 0))  # Tuesday: no Monday window
    # a holiday on Sunday switches off the whole window, the Monday tail too
    p = policy({"night": {"sun": ["22:00-02:00"]}}, {"2026-11-29": "off"})
    assert not in_schedule(p, "night", at(2026, 11, 30, 1, 0))


def test_holiday_off_and_swap():
    p = policy({"day": {"mon-fri": ["07:00-18:00"]}, "short": {"daily": ["09:00-12:00"]}},
               {"2026-12-25": "off", "2026-12-24": "short"})
    assert not in_schedule(p, "day", at(2026, 12, 25, 10, 0))   # Friday, but Christmas
    assert in_schedule(p, "day", at(2026, 12, 24, 10, 0))       # short day: 09-12
    assert not in_schedule(p, "day", at(2026, 12, 24, 13, 0))


def test_wall_clock_across_dst():
    p = policy({"day": {"daily": ["07:00-18:00"]}})
    # Oslo: CEST -> CET on 2026-10-25 03:00; the window stays 07:00-18:00 local
    for d in (24, 25, 26):
        assert in_schedule(p, "day", at(2026, 10, d, 7, 0))
        assert not in_schedule(p, "day", at(2026, 10, d, 6, 59))
    utc_0630 = datetime(2026, 10, 26, 6, 30, tzinfo=timezone.utc).timestamp()  # 07:30 CET
    assert in_schedule(p, "day", utc_0630)


windows = st.tuples(st.integers(0, 1439), st.integers(1, 1440)).filter(lambda w: w[0] != w[1] % 1440)


@settings(max_examples=300, deadline=None)
@given(w=windows, instant=st.integers(1_700_000_000, 1_900_000_000),
       tz=st.sampled_from([OSLO, "America/New_York", "Australia/Sydney", "UTC"]))
def test_daily_window_matches_local_wall_clock(w, instant, tz):
    start, end = w
    spec = {"daily": [f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"]}
    p = policy({"s": spec}, tz=tz)
    local = datetime.fromtimestamp(instant, ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    expected = (start <= minute < end) if end > start else (minute >= start or minute < end)
    assert in_schedule(p, "s", instant) == expected


@settings(max_examples=200, deadline=None)
@given(instant=st.integers(1_700_000_000, 1_900_000_000), hours=st.integers(1, 24 * 14))
def test_same_local_time_same_answer(instant, hours):
    """The answer depends only on local weekday and minute, whatever DST does."""
    p = policy({"s": {"mon-fri": ["07:00-18:00"], "sat": ["22:00-03:00"]}})
    a = datetime.fromtimestamp(instant, ZoneInfo(OSLO))
    b_local = (a + timedelta(days=7 * (hours // 24 // 7 + 1))).replace(tzinfo=None)
    b = b_local.replace(tzinfo=ZoneInfo(OSLO)).timestamp()
    same = datetime.fromtimestamp(b, ZoneInfo(OSLO))
    if (same.hour, same.minute, same.weekday()) == (a.hour, a.minute, a.weekday()):
        assert in_schedule(p, "s", instant) == in_schedule(p, "s", b)


@pytest.mark.parametrize("spec,message", [
    ({"mon": ["08:00-08:00"]}, "starts and ends at the same time"),
    ({"mon": ["08:00-12:00", "11:00-13:00"]}, "windows overlap on mon (08:00-12:00 and 11:00-13:00)"),
    ({"sun": ["22:00-02:00"], "mon": ["01:00-05:00"]}, "windows overlap on mon"),
    ({"funday": ["08:00-09:00"]}, "unknown day 'funday'"),
    ({"mon": ["8-9"]}, "is not a time (HH:MM)"),
    ({"mon": ["25:00-26:00"]}, "is not a time of day"),
    ({"mon": ["24:00-08:00"]}, "is not a time of day"),
    ({"mon": "0800-0900"}, "'0800' is not a time (HH:MM)"),
    ({"mon": ["08:00"]}, "is not a window"),
    ({}, "needs at least one day"),
])
def test_bad_schedules_are_refused_with_the_reason(spec, message):
    with pytest.raises(PolicyError, match=re.escape(message)):
        parse_schedule("s", spec)


def test_bad_timezone_holiday_and_name():
    with pytest.raises(PolicyError, match="unknown time zone 'Mars/Olympus'"):
        check_timezone("Mars/Olympus")
    with pytest.raises(PolicyError, match="not a date"):
        check_holiday("2026-02-30", "off", {})
    with pytest.raises(PolicyError, match="neither 'off' nor a schedule"):
        check_holiday("2026-12-24", "party", {})
    with pytest.raises(PolicyError, match="schedule name"):
        parse_schedule("Day Shift", {"mon": "08:00-09:00"})
    assert parse_schedule("all", {"daily": "00:00-24:00"}).windows[0].end == 1440
