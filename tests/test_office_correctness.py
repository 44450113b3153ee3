"""The office as a new member of staff meets it: PIN privacy, names that survive
revocation, dates in the site's time zone, the remembered store, `sync now`
against a hung store, the simulator's wording, names in lists, and the files a
pip-installed door needs. accessctl runs as its own process, as staff run it."""

import json
import socket
import subprocess
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from accessd.core import when
from accessd.site.db import SiteDB
from accessd.site.publish import door_keys
from accessd.storage.keys import write_key_file
from accessd.sync.door import reply_seconds
from accessd.testing import DaemonProcess, write_sim_config

from .helpers import setup_site

ROOT = Path(__file__).resolve().parent.parent


def run(*args, stdin=None, env=None):
    return subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", *args],
                          input=stdin, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def office(tmp_path):
    """A site in Oslo with a door group, a door and two residents."""
    site_dir = tmp_path / "site"

    def ctl(*args, stdin=None, ok=True):
        r = run("--site", str(site_dir), *args, stdin=stdin)
        if ok is not None:
            assert (r.returncode == 0) == ok, r.stdout + r.stderr
        return r

    def setup(*args):
        return setup_site(site_dir, *args)

    setup("site", "init", "riverside")
    setup("site", "timezone", "Europe/Oslo")
    setup("group", "add", "bldg-a")
    setup("door", "add", "door-a", "--group", "bldg-a")
    anna = json.loads(setup("person", "add", "--name", "Anna Berg", "--unit", "12A", "--group",
                            "bldg-a", "--json"))["person"]
    bo = json.loads(setup("person", "add", "--name", "Bo Lund", "--unit", "14C", "--group",
                          "bldg-a", "--json"))["person"]
    ctl.dir, ctl.anna, ctl.bo, ctl.tmp = site_dir, anna, bo, tmp_path
    return ctl


def door_for(office, **extra):
    """A simulated door of the office's site, syncing from the site's store."""
    d = office.tmp / "door-a"
    config = write_sim_config(d, keys=False, door_id="door-a")
    store = json.loads(office("site", "show", "--json").stdout)["store"]
    text = config.read_text().replace("unlock_seconds = 5", "unlock_seconds = 60")
    config.write_text(text + f'\n[sync]\nurl = "{store}"\ninterval_seconds = 3600\n'
                      + "".join(f"{k} = {v}\n" for k, v in extra.items()))
    site = SiteDB.open(office.dir)
    write_key_file(d / "keys/door-keys.json", door_keys(site, "door-a"))
    site.close()
    return config


def utc(text):
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


# ---- 1. a PIN that is taken ------------------------------------------------------------
def test_a_taken_pin_is_refused_without_saying_whose_and_the_clash_is_audited(office):
    office("enroll", "--person", office.anna, "--kind", "pin", "--pin-stdin", stdin="482913\n")
    r = office("enroll", "--person", office.bo, "--kind", "pin", "--pin-stdin",
               stdin="482913\n", ok=False)
    assert r.returncode == 1
    assert r.stderr.startswith("accessctl: this PIN cannot be used: choose another one")
    for leak in (office.anna, "Anna", "12A"):
        assert leak not in r.stdout + r.stderr
    creds = json.loads(office("list", "--json").stdout)
    assert [(c["person"], c["kind"]) for c in creds] == [(office.anna, "pin")]  # Bo got none
    audit = json.loads(office("audit", "--json").stdout)
    clash = [a for a in audit if a["event"] == "pin.collision"]
    assert len(clash) == 1 and audit[-1] is clash[0]   # (after the adds and the first PIN)
    assert "Bo Lund (14C)" in clash[0]["text"] and "Anna Berg (12A)" in clash[0]["text"]
    assert "Bo" not in clash[0]["detail"] and "Anna" not in clash[0]["detail"]  # ids, sealed
    # a card is a thing in the clerk's hand: its holder is named, by name
    office("enroll", "--person", office.anna, "--kind", "nfc", "--uid", "04A1B2C3")
    r = office("enroll", "--person", office.bo, "--kind", "nfc", "--uid", "04A1B2C3", ok=False)
    assert "already enrolled to Anna Berg (12A)" in r.stderr


# ---- 2. names that survive revocation ---------------------------------------------------
def test_a_revoked_or_lost_card_is_still_named_in_the_office_log(office):
    card = json.loads(office("enroll", "--person", office.anna, "--kind", "nfc", "--uid",
                             "04A1B2C3", "--json").stdout)["id"]
    fob = json.loads(office("enroll", "--person", office.bo, "--kind", "fob", "--uid",
                            "12648430", "--json").stdout)["id"]
    office("publish")
    config = door_for(office)
    d = DaemonProcess(config).wait_ready()
    try:
        assert d.request({"op": "sync"})["ok"]
        assert d.request({"op": "sim", "input": "tap", "uid": "04A1B2C3"})["decision"] == \
            "granted"
        assert "revoked" in office("revoke", card).stdout
        office("lost", fob)
        office("publish")
        assert d.request({"op": "sync"})["ok"]
        old = d.request({"op": "sim", "input": "tap", "uid": "04A1B2C3"})
        assert old["decision"] == "denied" and old["credential"].startswith("fp:")
        assert d.request({"op": "sim", "input": "fob", "number": "12648430"})["reason"] == \
            "denied: credential reported lost"
    finally:
        d.terminate()
    up = subprocess.run([sys.executable, "-m", "accessd", "upload", "--config", str(config)],
                        capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    office("logs", "pull")
    rows = json.loads(office("logs", "show", "--json").stdout)
    access = [(r["kind"], r["person"]) for r in rows if r["kind"].startswith("access.")]
    assert access == [("access.granted", "Anna Berg (12A)"),
                      ("access.denied", "revoked card of Anna Berg (12A)"),
                      ("access.denied", "lost fob of Bo Lund (14C)")]
    assert "revoked card of Anna Berg (12A)" in office("logs", "show").stdout
    assert json.loads(office("logs", "show", "--person", office.anna, "--json").stdout)[1][
        "credential_status"] == "revoked"
    # not a stranger: the office knows whose card it was
    assert json.loads(office("report", "--strangers", "--json").stdout) == []
    # the card itself is free again: a new tenant can be given it
    office("enroll", "--person", office.bo, "--kind", "nfc", "--uid", "04A1B2C3")
    assert "revoked" in office("person", "show", office.anna).stdout


# ---- 3. dates staff can trust --------------------------------------------------------------
def test_a_date_only_end_lasts_through_that_day_in_the_site_time_zone(office):
    r = office("enroll", "--person", office.anna, "--kind", "nfc", "--uid", "04A1B2C3",
               "--valid-from", "2036-12-01", "--valid-until", "2036-12-31", "--json")
    c = json.loads(r.stdout)
    assert c["valid_from"] == utc("2036-11-30T23:00:00")    # Oslo midnight, UTC+1
    assert c["valid_until"] == utc("2036-12-31T23:00:00")   # the end of the 31st in Oslo
    listed = office("list").stdout
    assert "times in Europe/Oslo" in listed
    assert "2036-12-01 00:00" in listed and "2036-12-31 24:00" in listed
    ok = office("explain", c["id"], "--door", "door-a", "--at", "2036-12-31T23:59").stdout
    assert ok.startswith("OPENS: granted") and "2036-12-31 23:59 Europe/Oslo" in ok
    late = office("explain", c["id"], "--door", "door-a", "--at", "2037-01-01T00:00").stdout
    assert late.startswith("DOES NOT OPEN: denied: expired (ended 2036-12-31 24:00 "
                           "Europe/Oslo)"), late
    early = office("explain", c["id"], "--door", "door-a", "--at", "2036-11-30T23:59").stdout
    assert "not valid yet (from 2036-12-01 00:00 Europe/Oslo)" in early


def test_an_end_in_the_past_is_refused_without_force(office):
    r = office("enroll", "--person", office.anna, "--kind", "nfc", "--uid", "04A1B2C3",
               "--valid-until", "2020-01-31", ok=False)
    assert r.returncode == 1
    assert r.stderr.startswith("accessctl: --valid-until: '2020-01-31' is in the past "
                               "(ended 2020-01-31 24:00 Europe/Oslo)")
    assert json.loads(office("list", "--json").stdout) == []
    office("enroll", "--person", office.anna, "--kind", "nfc", "--uid", "04A1B2C3",
           "--valid-until", "2020-01-31", "--force")
    assert len(json.loads(office("list", "--json").stdout)) == 1


def test_csv_dates_are_site_days_and_a_past_end_is_a_warning(office):
    csv = office.tmp / "people.csv"
    csv.write_text("name,unit,role,kind,uid,groups,valid_from,valid_until\n"
                   "Cy Courier,,courier,nfc,04C0C0C0,bldg-a,2036-06-01,2036-06-30\n"
                   "Vera Visitor,,visitor,nfc,04EEEEEE,bldg-a,,2020-01-02\n")
    r = office("import", str(csv))
    assert "imported: 2 people, 2 credentials, 2 grants added" in r.stdout
    assert f"{csv}:3: warning: valid_until 2020-01-02 is in the past (ended 2020-01-02 " \
           "24:00 Europe/Oslo)" in r.stderr
    cy = [c for c in json.loads(office("list", "--json").stdout) if c["name"] == "Cy Courier"]
    assert cy[0]["valid_from"] == utc("2036-05-31T22:00:00")    # summer time, UTC+2
    assert cy[0]["valid_until"] == utc("2036-06-30T22:00:00")


@pytest.mark.parametrize("tz,day,start,end", [
    ("Europe/Oslo", "2026-03-29", "2026-03-28T23:00:00", "2026-03-29T22:00:00"),  # 23 h day
    ("America/New_York", "2026-11-01", "2026-11-01T04:00:00", "2026-11-02T05:00:00"),  # 25 h
    ("Asia/Kolkata", "2026-12-31", "2026-12-30T18:30:00", "2026-12-31T18:30:00"),
    ("UTC", "2026-12-31", "2026-12-31T00:00:00", "2027-01-01T00:00:00"),
])
def test_a_day_starts_and_ends_at_local_midnight_across_dst(tz, day, start, end):
    assert when.parse(day, tz, now=0) == utc(start)
    assert when.parse(day, tz, end=True, now=0) == utc(end)
    assert when.fmt(utc(end), tz, end=True) == f"{day} 24:00"
    assert when.fmt(utc(start), tz) == f"{day} 00:00"


@pytest.mark.parametrize("text", ["2026-02-30", "31.12.2026", "soon", "2026-12-31T25:00"])
def test_a_bad_date_names_the_accepted_forms(text):
    with pytest.raises(ValueError, match="not a"):
        when.parse(text, "UTC", now=0)


def test_office_log_times_are_in_the_site_time_zone(office):
    site = SiteDB.open(office.dir)
    site.db.insert("events", {"door": "door-a", "log": "", "seq": 1,
                              "ts": "2026-07-01T22:30:00.000Z", "kind": "access.denied",
                              "credential": "fp:0000000000", "reason": "denied: unknown "
                              "credential", "detail": "{}", "prev_hash": "", "hash": ""})
    site.close()
    shown = office("logs", "show").stdout
    assert "time (Europe/Oslo)" in shown and "2026-07-02 00:30:00" in shown
    report = json.loads(office("report", "--json").stdout)
    assert [(r["day"], r["denied"]) for r in report] == [("2026-07-02", 1)]   # Oslo's day


# ---- 4. the site remembers its store ---------------------------------------------------------
def test_the_site_remembers_the_store_publish_used(office):
    other = office.tmp / "elsewhere"
    office("publish", "--store", other.as_uri())
    assert json.loads(office("site", "show", "--json").stdout)["store"] == other.as_uri()
    assert (other / "bundles/bldg-a.bundle").exists()
    r = office("logs", "pull")
    assert f"no new batches in {other.as_uri()}" in r.stdout
    assert f"reading {other.as_uri()}" in r.stderr
    office("publish")                                     # no --store: the same one
    assert not (office.dir / "store").exists()
    r = office("site", "store", "ftp://example.org/x", ok=False)
    assert r.returncode == 1 and "ftp://example.org/x" in r.stderr
    assert json.loads(office("site", "show", "--json").stdout)["store"] == other.as_uri()


# ---- 5. sync now against a hung store ----------------------------------------------------------
def test_sync_now_against_a_hung_store_prints_the_store_error(office):
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)                       # accepts connections, never answers
    url = f"http://127.0.0.1:{hung.getsockname()[1]}/"
    config = door_for(office)
    config.write_text(config.read_text().replace(
        f'url = "{json.loads(office("site", "show", "--json").stdout)["store"]}"',
        f'url = "{url}"\ntimeout_seconds = 1'))
    d = DaemonProcess(config).wait_ready()
    try:
        r = run("--config", str(config), "sync", "now")
    finally:
        d.terminate()
        hung.close()
    assert r.returncode == 1
    assert r.stderr.startswith(f"accessctl: sync failed: store unavailable: GET {url}"
                               "bundles/bldg-a.index: no answer within 1 s"), r.stderr
    # the door waits for a run in progress and then its own; the client waits longer
    assert reply_seconds(15) >= 2 * 15


# ---- 6. the simulator's words ------------------------------------------------------------
def test_simulator_words_a_denial_during_a_grant_and_a_forced_door(office):
    office("enroll", "--person", office.anna, "--kind", "nfc", "--uid", "04A1B2C3")
    r = office("publish")
    assert "1 credential, 1 door," in r.stdout
    config = door_for(office)
    d = DaemonProcess(config).wait_ready()
    try:
        d.request({"op": "sync"})
        sim = lambda *a: run("--config", str(config), "sim", *a).stdout.strip()  # noqa: E731
        forced = sim("door", "open")
        assert "alarms: door.forced" in forced
        sim("door", "closed")
        granted = sim("tap", "04A1B2C3")
        assert granted.startswith("GRANTED c") and "(granted)" not in granted
        assert granted.endswith("at front. relay: unlocked")
        denied = sim("tap", "04DEAD99")
        assert denied.startswith("DENIED fp:") and denied.endswith(
            "at front: unknown credential. relay: still unlocked from the previous grant")
        assert "alarms: none" in sim("door", "open")     # within the unlock time
        status = run("--config", str(config), "status").stdout
        assert "ok (ok)" not in status and "sim: ok, last credential" in status
    finally:
        d.terminate()


# ---- 7. names in lists, help texts ------------------------------------------------------------
def test_office_lists_show_names_and_help_does_not_say_door_mode(office):
    r = office("enroll", "--person", office.anna, "--kind", "nfc", "--uid", "04A1B2C3")
    assert "for Anna Berg (12A)" in r.stdout
    listed = office("list").stdout
    assert "Anna Berg (12A)" in listed and office.anna not in listed
    assert "Door mode" not in run("enroll", "--help").stdout
    assert run("--site", str(office.dir), "person", "show").stderr.startswith(
        "accessctl: missing argument 'PERSON_ID'")


# ---- 8. the wheel carries the examples -------------------------------------------------------
def test_the_wheel_carries_the_examples_and_accessd_init_writes_them(tmp_path):
    wheels = tmp_path / "wheels"
    b = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w",
                        str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert b.returncode == 0, b.stdout[-3000:] + b.stderr[-3000:]
    assert "License classifiers are deprecated" not in b.stdout + b.stderr
    assert "project.license` as a TOML table is deprecated" not in b.stdout + b.stderr
    wheel = next(wheels.glob("accessd-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("config/pi-door.toml", "systemd/accessd.service", "hw/WIRING.md",
              "hw/99-accessd-nfc.rules"):
        assert f"accessd/share/{f}" in names
    # the license it claims, as a file (Apache-2.0 asks for its text to go with it)
    licence = next(n for n in names if n.endswith("/LICENSE"))
    assert b"Apache License" in zipfile.ZipFile(wheel).read(licence)
    # run `accessd init` from the unpacked wheel, not from this checkout
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    out = tmp_path / "door-files"
    code = ("import sys, accessd; assert accessd.__file__.startswith(sys.path[1]), "
            "accessd.__file__; from accessd.cli.daemon import main; sys.exit(main())")
    r = subprocess.run([sys.executable, "-c", code, "init", str(out), "--accessd-bin",
                        "/usr/local/bin/accessd"], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path, env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    unit = (out / "systemd/accessd.service").read_text()
    assert "ExecStart=/usr/local/bin/accessd run --config /etc/accessd/accessd.toml" in unit
    assert (out / "accessd.toml").read_text() == (ROOT / "config/pi-door.toml").read_text()
    assert (out / "WIRING.md").exists() and (out / "udev/99-accessd-nfc.rules").exists()
    # a second run refuses to overwrite, and says so
    again = subprocess.run([sys.executable, "-c", code, "init", str(out)], capture_output=True,
                           text=True, timeout=60, cwd=tmp_path,
                           env={"PYTHONPATH": str(unpacked)})
    assert again.returncode == 1 and "already exist" in again.stderr and "--force" in again.stderr
    # units that could not start it: a binary under /home, which ProtectHome= hides
    home = subprocess.run([sys.executable, "-c", code, "init", str(tmp_path / "home-files"),
                           "--accessd-bin", "/home/pi/venv/bin/accessd"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env={"PYTHONPATH": str(unpacked)})
    assert home.returncode == 0 and "ProtectHome=yes" in home.stderr and "/opt" in home.stderr


def test_the_upload_unit_is_hardened_as_the_door_unit_is():
    """accessd-upload.service reads the log and the key file and talks to the store: it
    gets every hardening setting of accessd.service but those for what only the door
    does (GPIO, serial and USB devices, the clock query, its runtime directory)."""
    def settings(name):
        text = (ROOT / "systemd" / name).read_text()
        return {ln.split("=", 1)[0] for ln in text.splitlines()
                if "=" in ln and not ln.startswith("#")}
    door_only = {"Type", "NotifyAccess", "ExecStart", "ExecStopPost", "Restart", "RestartSec",
                 "WatchdogSec", "TimeoutStopSec", "RestartPreventExitStatus",
                 "SupplementaryGroups", "RuntimeDirectory", "RuntimeDirectoryMode",
                 "StateDirectory", "StateDirectoryMode", "WorkingDirectory", "Environment",
                 "DevicePolicy", "DeviceAllow", "StandardError", "SyslogIdentifier",
                 "Documentation", "After", "Description", "WantedBy", "SystemCallFilter"}
    missing = settings("accessd.service") - settings("accessd-upload.service") - door_only
    assert not missing, sorted(missing)


def test_the_console_unit_is_hardened_as_the_upload_unit_is():
    """accessd-console.service (the office console) gets every hardening setting of
    accessd-upload.service, and serves on the loopback only (nginx is in front)."""
    def settings(name):
        text = (ROOT / "systemd" / name).read_text()
        return {ln.split("=", 1)[0] for ln in text.splitlines()
                if "=" in ln and not ln.startswith("#")}
    missing = settings("accessd-upload.service") - settings("accessd-console.service") - {
        "Type", "ExecStart", "User", "Group", "Description", "After", "Wants"}
    assert not missing, sorted(missing)
    unit = (ROOT / "systemd" / "accessd-console.service").read_text()
    assert "--listen 127.0.0.1:" in unit and "--secure-cookies" in unit
    # the nightly purge at the office: as hardened, and it pulls before it purges
    missing = settings("accessd-upload.service") - settings("accessd-office-purge.service") - {
        "ExecStart", "Description"}
    assert not missing, sorted(missing)
    purge = (ROOT / "systemd" / "accessd-office-purge.service").read_text()
    assert purge.index("logs pull") < purge.index("logs purge")
    assert "OnCalendar=" in (ROOT / "systemd" / "accessd-office-purge.timer").read_text()
