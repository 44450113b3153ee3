"""Access policy from the office to the door: schedules, holidays, role defaults, explain."""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from accessd.cli import accessctl
from accessd.core import decide as d
from accessd.core.credentials import CredentialRecord
from accessd.core.schedule import Policy, PolicyError, parse_schedule
from accessd.testing import DaemonProcess

from .test_sync import Office


def at(y, mo, day, h, mi):
    return datetime(y, mo, day, h, mi, tzinfo=ZoneInfo("Europe/Oslo")).timestamp()


POLICY = Policy("Europe/Oslo", {"delivery": parse_schedule("delivery", {"mon-fri": "08:00-16:00"})},
                {"2026-12-25": "off"})


def rec(schedule=""):
    return CredentialRecord("c1", "nfc", "p1", "low", "active", None, None, "courier", schedule)


def test_decide_reasons_with_schedules():
    assert d.decide(rec(), "normal", at(2026, 11, 23, 3, 0), policy=POLICY).reason == "granted"
    ok = d.decide(rec("delivery"), "normal", at(2026, 11, 23, 9, 0), policy=POLICY)
    assert ok.granted and ok.reason == "granted: schedule 'delivery'"
    late = d.decide(rec("delivery"), "normal", at(2026, 11, 23, 16, 0), policy=POLICY)
    assert not late.granted and late.reason == "denied: outside schedule 'delivery'"
    xmas = d.decide(rec("delivery"), "normal", at(2026, 12, 25, 9, 0), policy=POLICY)
    assert xmas.reason == "denied: outside schedule 'delivery'"
    assert d.decide(rec("night"), "normal", 0, policy=POLICY).reason == \
        "denied: schedule 'night' is not defined"


@pytest.fixture
def office(tmp_path):
    o = Office(tmp_path)
    o.site.timezone_set("Europe/Oslo")
    yield o
    o.site.close()


def ctl(office, *args):
    return CliRunner().invoke(accessctl.main, ["--site", str(office.site.dir), *args])


def test_bad_rules_are_refused_when_created(office):
    r = ctl(office, "schedule", "add", "x", "--window", "mon 08:00-08:00")
    assert r.exit_code == 1 and "starts and ends at the same time" in r.output
    r = ctl(office, "schedule", "add", "x", "--window", "mon 08:00-12:00", "--window", "mon 11:00-13:00")
    assert r.exit_code == 1 and "windows overlap on mon" in r.output
    r = ctl(office, "site", "timezone", "Mars/Olympus")
    assert r.exit_code == 1 and "unknown time zone 'Mars/Olympus'" in r.output
    r = ctl(office, "holiday", "2026-12-24", "--use", "party")
    assert r.exit_code == 1 and "neither 'off' nor a schedule" in r.output
    r = ctl(office, "role-schedule", "courier", "nope")
    assert r.exit_code == 1 and "no schedule 'nope'" in r.output
    r = ctl(office, "schedule", "add", "x", "--window", "monday08:00")
    assert r.exit_code == 1 and "--window: " in r.output and "give DAYS and a window" in r.output
    assert office.site.policy().schedules == {}


def test_courier_follows_delivery_hours_and_explain_says_why(office):
    assert ctl(office, "schedule", "add", "delivery", "--window", "mon-fri 08:00-16:00").exit_code == 0
    assert ctl(office, "holiday", "2026-12-25").exit_code == 0
    cy = office.site.person_add("Cy Courier", "", "courier")
    van = office.site.credential_add(cy, "nfc", "04C0C0C0")
    office.site.grant(cy, "bldg-a")
    assert ctl(office, "role-schedule", "courier", "delivery").exit_code == 0

    def explain(when, door="door-a1", cred=van["id"]):
        r = ctl(office, "explain", cred, "--door", door, "--at", when, "--json")
        assert r.exit_code == 0, r.output
        return json.loads(r.output)["reason"]
    assert explain("2026-11-23T09:00") == "granted: schedule 'delivery'"
    assert explain("2026-11-23T19:30") == "denied: outside schedule 'delivery'"
    assert explain("2026-12-25T09:00") == ("denied: outside schedule 'delivery' (2026-12-25 "
                                            "is a holiday: schedules are off all day)")
    assert explain("2026-11-23T19:30", cred=office.card["id"]) == "granted"      # a resident
    assert explain("2026-11-23T09:00", door="door-b1").startswith(
        "denied: unknown credential (not granted door group 'bldg-b'")
    office.site.credential_status(office.card["id"], "lost")
    assert explain("2026-11-23T09:00", cred=office.card["id"]) == "denied: credential reported lost"
    r = ctl(office, "explain", van["id"], "--door", "door-a1", "--at", "2026-11-23T09:00")
    assert r.output.startswith("OPENS: granted: schedule 'delivery'")

    def explain_with(*extra):
        r = ctl(office, "explain", van["id"], "--door", "door-a1", "--at", "2026-11-23T09:00",
                "--json", *extra)
        assert r.exit_code == 0, r.output
        return json.loads(r.output)["reason"]
    assert explain_with("--mode", "lockdown") == "denied: door locked down"
    assert explain_with("--whitelist-age-hours", "30") == \
        "denied: whitelist too old for a temporary pass (30 h, at most 24 h)"
    assert explain_with("--clock-unsynced", "residents") == \
        "denied: clock not synchronised (residents only)"
    assert explain_with("--clock-unsynced", "deny") == "denied: clock not synchronised"
    office.site.db.execute("UPDATE credentials SET max_uses = 5 WHERE id = ?", [van["id"]])
    assert explain_with("--used", "5") == "denied: pass used up (5 of 5 entries)"
    assert explain_with("--used", "2") == "granted: schedule 'delivery' (entry 3 of 5)"
    assert explain_with("--card-pin").startswith("card accepted; PIN required")
    pin = office.site.credential_add(office.anna, "pin", "2468")
    r = ctl(office, "explain", pin["id"], "--door", "door-a1", "--json", "--pin-lockout")
    assert json.loads(r.output)["reason"] == "denied: pin lockout"
    r = ctl(office, "explain", pin["id"], "--door", "door-a1", "--json", "--card-pin")
    assert json.loads(r.output)["reason"] == "denied: card+PIN required"


def test_the_door_applies_the_schedule_from_its_bundle(office):
    """A courier outside delivery hours is denied at the door; a resident is not."""
    now = datetime.now(ZoneInfo("Europe/Oslo"))
    start = (now.hour + 2) % 24
    closed = f"daily {start:02d}:00-{(start + 1) % 24:02d}:00"   # open only later today
    assert ctl(office, "schedule", "add", "delivery", "--window", closed).exit_code == 0
    cy = office.site.person_add("Cy Courier", "", "courier")
    office.site.credential_add(cy, "nfc", "04C0C0C0")
    office.site.grant(cy, "bldg-a")
    office.site.role_schedule_set("courier", "delivery")
    office.publish()
    dp = DaemonProcess(office.door()).wait_ready()
    try:
        assert dp.request({"op": "sync"})["ok"]
        r = dp.request({"op": "sim", "input": "tap", "uid": "04C0C0C0"})
        assert r["decision"] == "denied" and r["reason"] == "denied: outside schedule 'delivery'"
        assert dp.request({"op": "sim", "input": "tap", "uid": "04A1B2C3"})["reason"] == "granted"
        # the office widens delivery hours; the door follows after the next bundle
        office.site.schedule_set("delivery", {"daily": "00:00-24:00"}, replace=True)
        office.publish()
        assert dp.request({"op": "sync"})["ok"]
        r = dp.request({"op": "sim", "input": "tap", "uid": "04C0C0C0"})
        assert r["reason"] == "granted: schedule 'delivery'"
    finally:
        dp.terminate()


def test_schedule_in_use_cannot_be_removed(office):
    office.site.schedule_set("delivery", {"mon-fri": "08:00-16:00"})
    office.site.role_schedule_set("courier", "delivery")
    r = ctl(office, "schedule", "remove", "delivery")
    assert r.exit_code == 1 and "still used by role courier" in r.output
    with pytest.raises(PolicyError):
        office.site.schedule_set("Bad Name", {"mon": "08:00-09:00"})
