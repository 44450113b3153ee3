"""Doors at estate scale: 225 doors and 25 groups from one CSV file, a directory per
door with its key file and config, and the doctor listing doors whose log, sync or
whitelist is old (a real door that syncs, fails, recovers and uploads)."""

import json
import os
import stat
import subprocess
import sys
import time
import tomllib

import pytest

from accessd.config import load_config
from accessd.site import intake
from accessd.site.db import SiteDB
from accessd.site.provision import doctor, import_doors, provision
from accessd.site.publish import publish
from accessd.storage.keys import load_key_file
from accessd.sync.store import FileStore
from accessd.sync.upload import upload
from accessd.testing import DaemonProcess

from .test_sync import Office

HEADER = "door,group,description,readers\n"


@pytest.fixture
def site(tmp_path):
    s = SiteDB.init(tmp_path / "site", "riverside")
    yield s
    s.close()


def estate_csv(blocks=25, doors=9) -> str:
    lines = [HEADER]
    for b in range(blocks):
        lines.append(f"blk{b:02d}-main,blk{b:02d},Block {b} main door,nfc;rdm6300;keypad\n")
        lines += [f"blk{b:02d}-u{u},blk{b:02d}-units,Unit {u},rdm6300;keypad\n"
                  for u in range(1, doors)]
    return "".join(lines)


def test_225_doors_and_their_groups_from_one_file_and_a_rerun_changes_nothing(site):
    rep = import_doors(site, estate_csv())
    assert rep.imported and rep.errors == []
    assert (rep.groups_added, rep.doors_added) == (50, 225)
    assert len(site.doors()) == 225
    assert site.door("blk07-main")["readers"] == ["keypad", "nfc", "rdm6300"]
    again = import_doors(site, estate_csv())
    assert again.imported and (again.doors_added, again.unchanged) == (0, 225)
    changed = import_doors(site, HEADER + "blk07-main,blk07,Block 7 main door,nfc;keypad\n")
    assert changed.doors_changed == 1
    assert site.door("blk07-main")["readers"] == ["keypad", "nfc"]


def test_bad_lines_are_each_named_and_nothing_is_imported(site):
    site.group_add("a")
    site.door_add("taken", "a")
    text = (HEADER + "ok-1,g1,,\n"
            "bad door,g1,,\n"                     # 3: id with a space
            "ok-2,,,\n"                           # 4: no group
            "ok-3,g1,,nfc;hid-iclass\n"           # 5: unknown reader
            "ok-1,g2,,\n"                         # 6: the same door again
            "taken,b,,\n"                         # 7: a door of another group
            "x,g1,,,extra\n")                     # 8: too many fields
    rep = import_doors(site, text)
    assert not rep.imported
    errors = dict(rep.errors)
    assert set(errors) == {3, 4, 5, 6, 7, 8}
    assert "door id 'bad door'" in errors[3] and "group id ''" in errors[4]
    assert "unknown reader 'hid-iclass'" in errors[5]
    assert "door 'ok-1' is on line 2 too" in errors[6]
    assert "already in group 'a'" in errors[7]
    assert "more fields than the header" in errors[8]
    assert [d["id"] for d in site.doors()] == ["taken"] and len(site.groups()) == 1
    rep = import_doors(site, "door,building\nx,y\n")
    assert rep.errors == [(1, "header: missing column 'group'; unknown column 'building' "
                              "(columns: door, group, description, readers)")]


def test_a_directory_per_door_with_its_key_file_and_config(site, tmp_path):
    import_doors(site, estate_csv(blocks=2, doors=3))
    site.store_url_set("https://office.example/accessd/")
    done = provision(site, tmp_path / "out")
    assert sorted(p.name for p in done) == sorted(d["id"] for d in site.doors())
    d = tmp_path / "out/blk01-u2"
    assert stat.S_IMODE(os.stat(d / "keys.json").st_mode) == 0o600
    keys = load_key_file(d / "keys.json")
    assert (keys.site.site, keys.site.group, keys.site.door) == ("riverside", "blk01-units",
                                                                  "blk01-u2")
    cfg = tomllib.loads((d / "accessd.toml").read_text())
    assert cfg["door"]["id"] == "blk01-u2"
    assert cfg["sync"]["url"] == "https://office.example/accessd/"
    assert "readers as: keypad, rdm6300" in (d / "accessd.toml").read_text()
    # only some doors, and a door that does not exist writes nothing at all
    assert len(provision(site, tmp_path / "one", ["blk00-main"])) == 1
    with pytest.raises(Exception, match="no door 'nope'"):
        provision(site, tmp_path / "none", ["blk00-main", "nope"])
    assert not (tmp_path / "none").exists()


def test_a_provisioned_config_runs_as_a_door(site, tmp_path):
    """The written config, pointed at simulated pins and a scratch directory, starts a
    real door that syncs its group's bundle from the site's store."""
    import_doors(site, HEADER + "gate,blk,,\n")
    store = FileStore(tmp_path / "store")
    site.store_url_set(store.url)
    publish(site, store)
    [d] = provision(site, tmp_path / "out")
    text = (d / "accessd.toml").read_text()
    for old, new in [('pin_factory = "lgpio"', 'pin_factory = "mock"'),
                     ("/etc/accessd/keys.json", str(d / "keys.json")),
                     ("/var/lib/accessd", str(tmp_path / "data")),
                     ("/run/accessd/control.sock", str(tmp_path / "control.sock")),
                     ('group = "accessd"', 'group = ""'),
                     ('listen = "127.0.0.1:9469"', 'listen = ""')]:
        assert old in text
        text = text.replace(old, new)
    (d / "accessd.toml").write_text(text)
    door = DaemonProcess(d / "accessd.toml").wait_ready()
    try:
        assert door.request({"op": "sync"})["ok"]
        st = door.request({"op": "status"})
        assert st["door"] == "gate" and st["whitelist"]["version"] == 1
    finally:
        door.terminate()


@pytest.fixture
def office(tmp_path):
    o = Office(tmp_path)
    yield o
    o.site.close()


def test_doctor_names_doors_with_old_logs_old_whitelists_and_failing_syncs(office):
    office.publish()
    config = office.door("door-a1")
    d = DaemonProcess(config).wait_ready()
    try:
        assert d.request({"op": "sync"})["ok"]
        real = office.store.root
        office.store.root.rename(real.with_name("gone"))       # the store goes away
        assert not d.request({"op": "sync"})["ok"]
        real.with_name("gone").rename(real)
    finally:
        d.terminate()
    upload(load_config(config), office.store)
    intake.pull(office.site, office.store)
    now = time.time()
    rows = {r["door"]: r for r in doctor(office.site, now=now)}
    assert rows["door-b1"]["problems"] == ["no log from this door yet"]
    a1 = rows["door-a1"]
    assert a1["whitelist_version"] == 1 and a1["published_version"] == 1
    assert len(a1["problems"]) == 1 and a1["problems"][0].startswith(
        "sync failing: store unavailable:")
    # the door syncs again: it logs that it recovered
    d = DaemonProcess(config).wait_ready()
    try:
        assert d.request({"op": "sync"})["ok"]
        office.publish()                                       # version 2, not synced yet
    finally:
        d.terminate()
    upload(load_config(config), office.store)
    intake.pull(office.site, office.store)
    assert doctor(office.site, now=now)[0]["problems"] == []  # a publish just made: fine
    later = {r["door"]: r for r in doctor(office.site, now=now + 40 * 3600)}
    assert later["door-a1"]["problems"] == ["log last heard 40 h ago",
                                            "whitelist version 1, 2 published 40 h ago"]
    # the CLI: exit 1 and a table; --json for monitoring
    site_dir = str(office.tmp / "site")
    r = subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", "--site", site_dir,
                        "site", "doctor", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert [x["door"] for x in json.loads(r.stdout)] == ["door-b1"]
    r = subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", "--site", site_dir,
                        "site", "doctor", "--upload-hours", "0"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "accessctl: --upload-hours: 0.0 is not in the range" in r.stderr


def test_door_import_and_provision_commands(tmp_path):
    def ctl(*args):
        return subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", "--site",
                               str(tmp_path / "s"), *args], capture_output=True, text=True,
                              timeout=60)
    assert ctl("site", "init", "riverside").returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "a-1,a,,\na 2,a,,\n")
    r = ctl("door", "import", str(bad))
    assert r.returncode == 1
    assert f"{bad}:3: door id 'a 2'" in r.stderr and "nothing imported: 1 bad line" in r.stderr
    good = tmp_path / "doors.csv"
    good.write_text(estate_csv(blocks=2, doors=2))
    r = ctl("door", "import", str(good))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("imported: 4 groups and 4 doors added, 0 doors updated, "
                                "0 doors already present")
    r = ctl("door", "provision", str(tmp_path / "out"), "--door", "blk01-main")
    assert r.returncode == 0 and r.stdout.startswith("wrote 1 door directory in")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["blk01-main"]
    r = ctl("door", "provision", str(tmp_path / "out2"), "--door", "nope")
    assert r.returncode == 1 and "accessctl: no door 'nope'" in r.stderr
