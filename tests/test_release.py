"""Signed software releases, off the Pi: `accessctl release build` (a real pip, the
real package index), the manifest and targets a door checks, `release publish`
into a real file store, `accessctl fleet`, the card `door provision --release`
writes, and the door's updater refusing what it must (a wheel altered in the
store, another door's target, an old target replayed, a downgrade nobody signed)
without touching what runs. The install, switch and rollback under systemd are in
test_release_container.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accessd.config import load_config
from accessd.errors import ReleaseError
from accessd.site import release as releases
from accessd.site.db import SiteDB
from accessd.site.provision import write_boot
from accessd.storage.keys import load_key_file
from accessd.sync import release as rel
from accessd.sync.store import FileStore
from accessd.updater import Updater, report, take_reports

REPO = Path(__file__).resolve().parent.parent


def ctl(*args, site=None):
    cmd = [sys.executable, "-m", "accessd.cli.accessctl"]
    if site:
        cmd += ["--site", str(site)]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A site with three doors and release 1.0 built for the Pi and for x86_64."""
    base = tmp_path_factory.mktemp("release")
    site_dir = base / "site"
    assert ctl("site", "init", "riverside", site=site_dir).returncode == 0
    for args in (("group", "add", "bldg-a"), ("group", "add", "bldg-b"),
                 ("door", "add", "a-1", "--group", "bldg-a"),
                 ("door", "add", "a-2", "--group", "bldg-a"),
                 ("door", "add", "b-1", "--group", "bldg-b"), ("publish",)):
        r = ctl(*args, site=site_dir)
        assert r.returncode == 0, r.stderr
    r = ctl("release", "build", "--platform", "aarch64", "--platform", "x86_64",
            "--version", "1.0", site=site_dir)
    assert r.returncode == 0, r.stderr
    return site_dir


def test_a_release_holds_every_wheel_for_the_pi_and_is_signed(built):
    site = SiteDB.open(built)
    blob, m = releases.load(site, built / "releases/1.0")
    names = [n.split("/", 1)[1] for n in m.files]
    # accessd itself, and the binary dependencies for a Pi (aarch64, CPython 3.11) and x86_64
    assert any(n.startswith("accessd-") for n in names)
    for dist in ("cryptography", "cffi", "lgpio", "libosdp"):
        assert any(n.startswith(dist + "-") and "aarch64" in n for n in names), (dist, names)
        assert any(n.startswith(dist + "-") and "x86_64" in n for n in names), (dist, names)
    assert m.python == "3.11" and m.package == "accessd[pi]==0.2.0"
    # every file as the manifest says
    for name, f in m.files.items():
        m.check_file(name, (built / "releases/1.0" / name).read_bytes())
    # another site's key does not open it
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(ReleaseError, match="bad signature"):
        rel.open_manifest(blob, public_key=other, site="riverside")
    with pytest.raises(ReleaseError, match="for site 'riverside', this is 'elm'"):
        rel.open_manifest(blob, public_key=site.keys.signing.public_key(), site="elm")
    cut = blob[:-1]
    with pytest.raises(ReleaseError):
        rel.open_manifest(cut, public_key=site.keys.signing.public_key(), site="riverside")


def test_build_refuses_bad_input_with_a_clear_message(built, tmp_path):
    r = ctl("release", "build", "--version", "1.0", "--platform", "x86_64", site=built)
    assert r.returncode == 1 and "release 1.0 is built already" in r.stderr, r.stderr
    r = ctl("release", "build", "--version", "one", site=built)
    assert r.returncode == 1 and "release version 'one'" in r.stderr
    r = ctl("release", "build", "--platform", "armv6", site=built)
    assert r.returncode == 1 and "armv6" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\nversion = "1"\n')
    r = ctl("release", "build", "--version", "2.0", "--source", tmp_path, site=built)
    assert r.returncode == 1 and "not accessd's source" in r.stderr
    r = ctl("release", "build", "--version", "2.0", "--python", "2.7", site=built)
    assert r.returncode == 1 and "--python '2.7'" in r.stderr
    assert not (built / "releases/2.0").exists()


def test_versions_order_as_numbers():
    assert rel.version_key("0.10") > rel.version_key("0.9")
    assert rel.version_key("1.0") == rel.version_key("1.0.0")
    for bad in ("", "1.x", "v1", "1..2", "1.2.3.4.5", "-1"):
        with pytest.raises(ReleaseError):
            rel.check_version(bad)


def _door(tmp_path: Path, site_dir: Path, door: str) -> tuple:
    """A door's config and keys, its updater's directories under tmp_path."""
    out = tmp_path / "doors"
    r = ctl("door", "provision", out, "--door", door, site=site_dir)
    assert r.returncode == 0, r.stderr
    cfg_text = (out / door / "accessd.toml").read_text()
    cfg_text = cfg_text.replace('"/var/lib/accessd"', f'"{tmp_path / "data"}"')
    cfg_text = cfg_text.replace('"/etc/accessd/keys.json"', f'"{out / door / "keys.json"}"')
    cfg_text = cfg_text.replace('"/run/accessd/control.sock"', f'"{tmp_path / "ctl.sock"}"')
    cfg_text = cfg_text.replace('group = "accessd"', 'group = ""')
    cfg_text += (f'\n[update]\nroot = "{tmp_path / "opt"}"\n'
                 f'state_dir = "{tmp_path / "state"}"\n')
    (tmp_path / "door.toml").write_text(cfg_text)
    cfg = load_config(tmp_path / "door.toml")
    return cfg, load_key_file(out / door / "keys.json")


def test_publish_canary_fleet_and_what_a_door_refuses(built, tmp_path):
    site = SiteDB.open(built)
    store = FileStore(built / "store")
    # --canary 2 of every door, then the rest: no door told twice
    r = ctl("release", "publish", "1.0", "--canary", "2", site=built)
    assert r.returncode == 0 and "to 2 doors: a-1, a-2" in r.stdout, r.stderr
    assert store.get(rel.manifest_name("1.0")) == (built / "releases/1.0/manifest").read_bytes()
    r = ctl("release", "publish", "1.0", "--canary", "5", site=built)
    assert "to 1 door: b-1" in r.stdout and "0.0 MB copied" in r.stdout   # wheels already there
    r = ctl("release", "publish", "1.0", "--canary", "1", site=built)
    assert r.returncode == 1 and "no door to publish to" in r.stderr
    for args, msg in ((("9.9", "--all"), "no release here"),
                      (("1.0", "--group", "nope"), "no door group 'nope'"),
                      (("1.0",), "say which doors"),
                      (("1.0", "--door", "a-1", "--group", "bldg-a"), "give one of")):
        r = ctl("release", "publish", *args, site=built)
        assert r.returncode == 1 and msg in r.stderr, (args, r.stderr)
    r = ctl("fleet", "--json", site=built)
    rows = {x["door"]: x for x in json.loads(r.stdout)}
    assert rows["a-1"]["target"] == "1.0" and rows["a-1"]["state"] == "pending"

    cfg, keys = _door(tmp_path, built, "a-1")
    # a wheel altered in the store: refused, nothing installed, said once
    wheel = next(n for n in store.list("releases/1.0/wheels/") if "/accessd-" in n)
    good = store.get(wheel)
    store.put(wheel, good[:100] + bytes([good[100] ^ 1]) + good[101:])
    up = Updater(cfg, keys, store)
    res = up.run()
    assert res.result == "refused" and "does not match its signed manifest" in res.message
    assert not (tmp_path / "opt/releases").exists() and not (tmp_path / "opt/current").exists()
    assert up.run().result == "refused"
    reports = take_reports(cfg.storage.data_dir)
    assert [r["kind"] for r in reports] == ["release.refused"]     # said once
    assert reports[0]["detail"]["version"] == "1.0"
    store.put(wheel, good)

    # another door's target in this door's place: refused
    store.put(rel.target_name("a-1"), store.get(rel.target_name("b-1")))
    res = Updater(cfg, keys, store).run()
    assert res.result == "refused" and "for door 'b-1', this is 'a-1'" in res.message

    # an old target replayed, and a downgrade nobody signed
    t = rel.make_target(site.keys.signing, site="riverside", door="a-1", version="1.0",
                        manifest=store.get(rel.manifest_name("1.0")), serial=1, issued=0)
    store.put(rel.target_name("a-1"), t)
    up = Updater(cfg, keys, store)
    up._save(serial=5)
    assert "an old target replayed" in up.run().message
    opened = rel.open_target(t, public_key=site.keys.signing.public_key(), site="riverside",
                             door="a-1")
    assert "needs the office's signed --downgrade" in rel.decide(
        rel.Target(**{**opened.__dict__, "serial": 9}), running="2.0", last_serial=5)
    assert rel.decide(rel.Target(**{**opened.__dict__, "serial": 9, "downgrade": True}),
                      running="2.0", last_serial=5) is None


def test_the_daemon_takes_the_updaters_reports_once(tmp_path):
    report(tmp_path, "release.applied", "release 1.1 running", version="1.1")
    with open(tmp_path / "release-reports.jsonl", "a") as f:
        f.write('{"kind": "release.rol')          # cut by a power cut
    got = take_reports(tmp_path)
    assert [(r["kind"], r["detail"]["version"]) for r in got] == [("release.applied", "1.1")]
    assert take_reports(tmp_path) == []


def test_a_card_for_one_door(built, tmp_path):
    site = SiteDB.open(built)
    boot = tmp_path / "bootfs"
    boot.mkdir()
    (boot / "cmdline.txt").write_text("console=tty1 root=PARTUUID=1-02 rootwait\n")
    imager = "#!/bin/bash\nset +e\necho imager\nrm -f /boot/firstrun.sh\nexit 0\n"
    (boot / "firstrun.sh").write_text(imager)       # Raspberry Pi Imager's settings
    res = write_boot(site, "a-2", boot, built / "releases/1.0")
    assert res["release"] == "1.0"
    first = (boot / "firstrun.sh").read_text().splitlines()
    assert first[1].startswith('bash "$(dirname "$0")/accessd/firstrun.sh"')  # ours, then Imager's
    assert "echo imager" in first
    assert (boot / "cmdline.txt").read_text().count("systemd.run=") == 1
    write_boot(site, "a-2", boot, built / "releases/1.0")     # twice: nothing doubled
    assert (boot / "cmdline.txt").read_text().count("systemd.run=") == 1
    assert (boot / "firstrun.sh").read_text().count("accessd/firstrun.sh") == 1
    assert 'id = "a-2"' in (boot / "accessd/accessd.toml").read_text()
    for f in ("firstrun.sh", "accessd/firstrun.sh", "accessd/firstboot"):
        assert (boot / f).stat().st_mode & 0o111, f     # systemd.run= executes them
    r = subprocess.run([sys.executable, "-m", "accessd.cli.daemon", "verify-release",
                        boot / "accessd/release", "--key-file", boot / "accessd/keys.json"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "signature and" in r.stdout, r.stderr
    w = next((boot / "accessd/release/wheels").glob("click-*.whl"))
    w.write_bytes(w.read_bytes()[:-1])
    r = subprocess.run([sys.executable, "-m", "accessd.cli.daemon", "verify-release",
                        boot / "accessd/release", "--key-file", boot / "accessd/keys.json"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "cut short or replaced" in r.stderr
    r = ctl("door", "provision", tmp_path, "--door", "a-2", "--release", "1.0", site=built)
    assert r.returncode == 1 and "no cmdline.txt here" in r.stderr
    shutil.rmtree(boot)


def test_a_restored_office_publishes_above_the_serial_its_doors_took(built):
    """The office's serial went back (restored from an older backup): the next target
    still goes above the one in the store, so the door does not take it for a replay."""
    site = SiteDB.open(built)
    store = FileStore(built / "store")
    r = ctl("release", "publish", "1.0", "--door", "b-1", site=built)
    assert r.returncode == 0, r.stderr
    before = rel.open_target(store.get(rel.target_name("b-1")),
                             public_key=site.keys.signing.public_key(), site="riverside",
                             door="b-1").serial
    site.meta_set("release_serial", "0")            # as a restore from long ago leaves it
    r = ctl("release", "publish", "1.0", "--door", "b-1", site=built)
    after = rel.open_target(store.get(rel.target_name("b-1")),
                            public_key=site.keys.signing.public_key(), site="riverside",
                            door="b-1")
    assert after.serial > before
    assert rel.decide(after, running=None, last_serial=before) is None


def test_fleet_reads_each_doors_newest_release_events(site_at):
    """On SQLite and PostgreSQL: what a door runs is its newest start or applied
    release, what failed its newest release.* event; an older start does not count."""
    site = site_at.init()
    site.group_add("g")
    for d in ("a", "b"):
        site.door_add(d, "g")
    site.meta_set("release_targets", json.dumps({"a": {"version": "1.2"}}))
    rows = [(1, "daemon.started", "started", {"release": "1.0"}),
            (2, "release.applied", "release 1.1 running", {"version": "1.1", "release": "1.1"}),
            (3, "release.rolled_back", "no READY within 90 s", {"version": "1.2"}),
            (4, "daemon.started", "started", {"release": "1.1"})]
    with site.db.atomic():
        for seq, kind, reason, detail in rows:
            site.db.execute("INSERT INTO events (door, log, seq, ts, kind, credential, reason, "
                            "detail, prev_hash, hash) VALUES ('a', '', ?, ?, ?, NULL, ?, ?, "
                            "'', '')", [seq, f"2026-12-05T10:0{seq}:00Z", kind, reason,
                                        json.dumps(detail)])
    got = {r["door"]: r for r in releases.fleet(site)}
    assert got["a"]["running"] == "1.1" and got["a"]["target"] == "1.2"
    assert got["a"]["state"] == "rolled back: no READY within 90 s"
    assert got["b"] == {"door": "b", "group": "g", "running": None, "target": None,
                        "state": "no release published", "last": None}
    site.close()
