"""When the office machine dies (#29, part 3): `site backup` -> the office is wiped ->
`site restore` -> publish -> the door applies it. On SQLite and on PostgreSQL, with
a real door daemon syncing from the store throughout."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from accessd.cli import accessctl
from accessd.testing import DaemonProcess, write_sim_config
from tests.helpers import SiteLocation

ANNA, BO, CAI = "04A1B2C3D4E5F6", "04B1B2C3D4E5F6", "04C1B2C3D4E5F6"


def ctl(loc, *args, ok=True, stdin=None):
    r = CliRunner().invoke(accessctl.main, [*loc.args, *args], input=stdin)
    if ok:
        assert r.exit_code == 0, r.output
    return r


def door_version(d) -> int:
    assert d.request({"op": "sync"})["ok"]
    return d.request({"op": "status"})["whitelist"]["version"]


def tap(d, uid) -> str:
    return d.request({"op": "sim", "input": "tap", "uid": uid})["decision"]


def test_backup_wipe_restore_publish_and_the_door_applies_it(site_at, tmp_path, request):
    store = (tmp_path / "store").as_uri()
    out = ctl(site_at, "site", "init", "riverside").stdout
    key = re.search(r"ARK1(-[A-Z2-7]+)+", out)[0]
    ctl(site_at, "site", "store", store)
    ctl(site_at, "group", "add", "lobby")
    ctl(site_at, "door", "add", "front", "--group", "lobby")
    ids = {}
    for name, unit, uid in (("Anna Berg", "12A", ANNA), ("Bo Lund", "14C", BO)):
        ids[name] = json.loads(ctl(site_at, "person", "add", "--name", name, "--unit", unit,
                                   "--group", "lobby", "--json").stdout)["person"]
        ctl(site_at, "enroll", "--person", ids[name], "--kind", "nfc", "--uid", uid)
    ctl(site_at, "publish")
    config = write_sim_config(tmp_path / "door", keys=False, door_id="front")
    config.write_text(config.read_text() + f'\n[sync]\nurl = "{store}"\n')
    ctl(site_at, "door", "keys", "front", "--out", str(tmp_path / "door/keys/door-keys.json"))
    door = DaemonProcess(config).wait_ready()
    try:
        assert door_version(door) == 1 and tap(door, BO) == "granted"

        backup = tmp_path / "office.backup"
        r = ctl(site_at, "site", "backup", "--out", str(backup), "--json")
        assert json.loads(r.stdout)["dialect"] == ("postgresql" if site_at.url else "sqlite")
        assert b"Anna Berg" not in backup.read_bytes() and b"SQLite" not in backup.read_bytes()
        # the office goes on after the backup: a new resident, Bo moves out (erased)
        cai = json.loads(ctl(site_at, "person", "add", "--name", "Cai Wu", "--unit", "2A",
                             "--group", "lobby", "--json").stdout)["person"]
        ctl(site_at, "enroll", "--person", cai, "--kind", "nfc", "--uid", CAI)
        ctl(site_at, "publish")
        ctl(site_at, "person", "forget", ids["Bo Lund"], "--reason", "moved out", "--yes")
        assert door_version(door) == 3 and tap(door, BO) == "denied"

        # the office machine dies: its directory (keys) and its database are gone
        shutil.rmtree(site_at.dir)
        new = SiteLocation(site_at.dir, request.getfixturevalue("postgres").database()
                           if site_at.url else None)
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        from accessd.site.backup import format_recovery_key
        (tmp_path / "wrong.txt").write_text(format_recovery_key(X25519PrivateKey.generate()))
        bad = ctl(new, "site", "restore", str(backup), "--recovery-key-file",
                  str(tmp_path / "wrong.txt"), ok=False)
        assert bad.exit_code == 1 and "recovery key" in bad.output and "Traceback" not in \
            bad.output
        assert not (site_at.dir / "keys").exists()          # nothing half-written
        (tmp_path / "key.txt").write_text(key + "\n")
        cut = tmp_path / "cut.backup"
        cut.write_bytes(backup.read_bytes()[:-10])
        bad = ctl(new, "site", "restore", str(cut), "--recovery-key-file",
                  str(tmp_path / "key.txt"), ok=False)
        assert bad.exit_code == 1 and ("cut short" in bad.output or "damaged" in bad.output)
        r = ctl(new, "site", "restore", str(backup), "--recovery-key-file",
                str(tmp_path / "key.txt"), "--json")
        res = json.loads(r.stdout)
        assert res["version_in_backup"] == 1 and res["version"] == 3
        assert res["erased_again"] == [ids["Bo Lund"]]
        again = ctl(new, "site", "restore", str(backup), "--recovery-key-file",
                    str(tmp_path / "key.txt"), ok=False)
        assert again.exit_code == 1 and "a site is already here" in again.output

        # publish from the restored office: the door takes it (no rollback refusal)
        ctl(new, "publish")
        assert door_version(door) == 4
        assert tap(door, ANNA) == "granted" and tap(door, BO) == "denied"
        assert tap(door, CAI) == "denied"     # enrolled after the backup: enrol again
        site = new.open()
        assert site.person(ids["Anna Berg"]).name == "Anna Berg"
        assert site.person(ids["Bo Lund"]).forgotten
        assert site.audit_verify()["problems"] == []
        assert [a["event"] for a in site.audit_log(action="site")] == ["site.restore"]
    finally:
        door.terminate()


def test_a_backup_needs_a_recovery_key_and_bad_files_are_named(tmp_path):
    loc = SiteLocation(tmp_path / "site")
    site = loc.init()                                   # (the library: no key printed)
    r = ctl(loc, "site", "backup", "--out", str(tmp_path / "b"), ok=False)
    assert r.exit_code == 2 and "no recovery key yet" in r.output   # (a setup step missing)
    r = ctl(loc, "site", "recovery-key", "--yes")
    key = re.search(r"ARK1(-[A-Z2-7]+)+", r.stdout)[0]
    ctl(loc, "site", "backup", "--out", str(tmp_path / "b"))
    (tmp_path / "k").write_text(key)
    (tmp_path / "junk").write_bytes(b"hello")
    r = ctl(SiteLocation(tmp_path / "x"), "site", "restore", str(tmp_path / "junk"),
            "--recovery-key-file", str(tmp_path / "k"), ok=False)
    assert r.exit_code == 1 and "not an accessd backup" in r.output
    (tmp_path / "typo").write_text(key[:-2] + "==")
    r = ctl(SiteLocation(tmp_path / "x"), "site", "restore", str(tmp_path / "b"),
            "--recovery-key-file", str(tmp_path / "typo"), ok=False)
    assert r.exit_code == 1 and "recovery key" in r.output
    r = ctl(SiteLocation(tmp_path / "x"), "site", "restore", str(tmp_path / "b"),
            stdin="ARK1-NOPE\n", ok=False)
    assert r.exit_code == 1 and "mistyped" in r.output
    assert not (tmp_path / "x" / "keys").exists()
    site.close()


def test_a_backup_never_takes_the_place_of_a_device_or_a_directory(tmp_path):
    """The backup is written beside its target and renamed over it: pointed at a device
    (as root, /dev/zero would become a file) or into a missing directory it refuses,
    and the device is untouched."""
    import os
    import stat
    loc = SiteLocation(tmp_path / "site")
    loc.init().close()
    ctl(loc, "site", "recovery-key", "--yes")
    for target, said in (("/dev/null", "not a regular file"),
                         (str(tmp_path / "no" / "such" / "f.backup"), "no such directory")):
        r = ctl(loc, "site", "backup", "--out", target, ok=False)
        assert r.exit_code == 1 and said in r.output, r.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not list(tmp_path.glob("**/*.part"))
