"""Bundles from the office to the doors: verification, rejection, atomic apply."""

import errno
import time
from pathlib import Path

import pytest

from accessd.clock import FakeClock
from accessd.config import load_config
from accessd.site.db import SiteDB
from accessd.site.keys import create as create_site_keys
from accessd.site.publish import door_keys, publish
from accessd.storage.eventlog import open_reader
from accessd.storage.keys import write_key_file
from accessd.sync import bundle
from accessd.sync.store import FileStore
from accessd.testing import DaemonProcess, write_sim_config

UID = "04A1B2C3"


class Office:
    def __init__(self, tmp: Path):
        self.site = SiteDB.init(tmp / "site", "riverside")
        self.site.group_add("bldg-a")
        self.site.group_add("bldg-b")
        self.site.door_add("door-a1", "bldg-a")
        self.site.door_add("door-b1", "bldg-b")
        self.anna = self.site.person_add("Anna Berg", "12A", "resident")
        self.card = self.site.credential_add(self.anna, "nfc", UID)
        self.site.grant(self.anna, "bldg-a")
        self.store = FileStore(tmp / "store")
        self.tmp = tmp

    def publish(self, **kw):
        return publish(self.site, self.store, **kw)

    def door(self, door_id="door-a1") -> Path:
        d = self.tmp / door_id
        config = write_sim_config(d, keys=False, door_id=door_id)
        config.write_text(config.read_text() + f'\n[sync]\nurl = "{self.store.url}"\n'
                                               "interval_seconds = 3600\n")
        write_key_file(d / "keys/door-keys.json", door_keys(self.site, door_id))
        return config

    def blob(self, group="bldg-a") -> bytes:
        return self.store.get(f"bundles/{group}.bundle")


@pytest.fixture
def office(tmp_path):
    o = Office(tmp_path)
    yield o
    o.site.close()


def opened(office, blob, *, door="door-a1", current=0, now=None, site="riverside", key=None):
    keys = door_keys(office.site, door)
    return bundle.open_(blob, public_key=office.site.keys.public, group_key=key or keys.seal,
                        site=site, door=door, current_version=current,
                        now=time.time() if now is None else now)


def test_a_good_bundle_opens(office):
    office.publish()
    header, plain = opened(office, office.blob())
    assert header.version == 1 and header.doors == ("door-a1",) and header.count == 1
    assert plain.startswith(b"SQLite format 3")


@pytest.mark.parametrize("mangle,reason", [
    (lambda b: b[:-100] + bytes([b[-100] ^ 1]) + b[-99:], "bad signature"),
    (lambda b: b[:len(bundle.MAGIC) + 40] + b"X" + b[len(bundle.MAGIC) + 41:], "bad signature"),
    (lambda b: b + b"\0", "1 bytes too many"),
    (lambda b: b[: len(b) // 2], "truncated bundle"),
    (lambda b: b[:200], "truncated bundle"),
    (lambda b: b"GIF89a" + b[6:], "not an accessd bundle"),
])
def test_tampered_or_truncated_bundles_are_rejected(office, mangle, reason):
    office.publish()
    with pytest.raises(bundle.BundleError, match=reason):
        opened(office, mangle(office.blob()))


def test_signed_by_another_key_is_rejected(office, tmp_path):
    office.publish()
    header, plain = opened(office, office.blob())
    rogue = create_site_keys(tmp_path / "rogue-keys")
    forged = bundle.seal(header, plain, door_keys(office.site, "door-a1").seal, rogue.signing)
    with pytest.raises(bundle.BundleError, match="bad signature"):
        opened(office, forged)


def test_wrong_site_door_version_expiry_and_key(office):
    office.publish()
    blob = office.blob()
    with pytest.raises(bundle.BundleError, match="for site 'riverside', this door belongs to 'elm'"):
        opened(office, blob, site="elm")
    with pytest.raises(bundle.BundleError, match="does not name this door"):
        opened(office, blob, door="door-b1", key=door_keys(office.site, "door-a1").seal)
    with pytest.raises(bundle.BundleError, match="older than the applied 2 .rollback or replay"):
        opened(office, blob, current=2)
    with pytest.raises(bundle.BundleError, match="already applied") as same:
        opened(office, blob, current=1)
    assert same.value.same
    with pytest.raises(bundle.BundleError, match="has expired"):
        opened(office, blob, now=time.time() + 31 * 86400)
    with pytest.raises(bundle.BundleError, match="cannot decrypt"):
        opened(office, blob, key=door_keys(office.site, "door-b1").seal)


def events(config, kind):
    conn = open_reader(load_config(config).storage.eventlog_path)
    return [dict(r) for r in conn.execute("SELECT * FROM events WHERE kind = ? ORDER BY seq",
                                          (kind,))]


def test_door_pulls_applies_and_rejects_keeping_the_old_whitelist(office):
    office.publish()
    v1 = office.blob()
    v1_index = office.store.get("bundles/bldg-a.index")
    config = office.door()
    d = DaemonProcess(config).wait_ready()
    try:
        assert d.request({"op": "sync"})["ok"]      # pulled at start, or now
        assert d.request({"op": "status"})["whitelist"]["version"] == 1
        tap = d.request({"op": "sim", "input": "tap", "uid": UID})
        assert tap["decision"] == "granted" and tap["credential"] == office.card["id"]
        # the office revokes the card and publishes; the door applies it
        office.site.credential_status(office.card["id"], "lost")
        office.publish()
        r = d.request({"op": "sync"})
        assert r["ok"] and r["result"] == "applied version 2 (1 credentials)"
        tap = d.request({"op": "sim", "input": "tap", "uid": UID})
        assert tap["reason"] == "denied: credential reported lost"
        # an attacker puts the old bundle and its index back: rejected, version 2 stays
        office.store.put("bundles/bldg-a.bundle", v1)
        office.store.put("bundles/bldg-a.index", v1_index)
        r = d.request({"op": "sync"})
        assert not r["ok"] and "older than the applied 2" in r["result"]
        # a tampered index: rejected
        office.store.put("bundles/bldg-a.index", v1_index[:-1] + bytes([v1_index[-1] ^ 1]))
        assert "bad signature" in d.request({"op": "sync"})["result"]
        assert d.request({"op": "sim", "input": "tap", "uid": UID})["reason"] == \
            "denied: credential reported lost"
        st = d.request({"op": "status"})
        assert st["whitelist"]["version"] == 2 and "bad signature" in st["sync"]["last"]
    finally:
        d.terminate()
    assert [e["reason"] for e in events(config, "sync.applied")] == \
        ["whitelist version 1 applied", "whitelist version 2 applied"]
    rejected = [e["reason"] for e in events(config, "sync.rejected")]
    assert len(rejected) == 2 and "rollback or replay" in rejected[0]


def test_a_door_outside_the_group_gets_nothing(office):
    office.publish()
    config = office.door("door-b1")
    d = DaemonProcess(config).wait_ready()
    try:
        assert d.request({"op": "sync"})["ok"]      # the start-up pull may have applied it
        wl = d.request({"op": "status"})["whitelist"]
        assert (wl["credentials"], wl["version"]) == (0, 1)
        assert d.request({"op": "sim", "input": "tap", "uid": UID})["decision"] == "denied"
    finally:
        d.terminate()


def test_disk_full_while_staging_keeps_the_old_whitelist(office, mocker):
    from accessd.core.events import Notice, SwapWhitelist
    from accessd.storage.keys import load_key_file
    from accessd.sync.door import SyncWorker
    office.publish()
    config = office.door()
    cfg = load_config(config)
    cfg.storage.data_dir.mkdir(parents=True)
    posted = []

    def post(event):                  # the core's side: install what the worker staged
        posted.append(event)
        if isinstance(event, SwapWhitelist):
            event.reply.set_result({"ok": True, "credentials": 1})
    worker = SyncWorker(cfg, load_key_file(cfg.storage.key_file), post, FakeClock(
        wall=time.time()))
    real_fsync = __import__("os").fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    mocker.patch("accessd.sync.door.os.fsync", side_effect=full)
    res = worker.sync_once()
    assert not res["ok"] and "cannot stage the new whitelist: No space left on device" in res["result"]
    assert [type(p) for p in posted] == [Notice] and posted[0].kind == "sync.rejected"
    assert not (cfg.storage.data_dir / "whitelist.db.new").exists()
    mocker.patch("accessd.sync.door.os.fsync", side_effect=real_fsync)
    res = worker.sync_once()
    assert isinstance(posted[-1], SwapWhitelist)   # a working disk: handed to the core
    assert res == {"ok": True, "result": "applied version 1 (1 credentials)"}
    assert Path(posted[-1].path).exists()


def test_stale_whitelist_raises_an_alarm_once_from_the_core(office, factory):
    """The age check runs on the core's own clock: no sync worker is running at all."""
    from accessd.engine import Engine
    from accessd.hw.gpio import DoorOutputs
    from accessd.storage.eventlog import EventLog, LogWriter
    from accessd.storage.keys import load_key_file
    from accessd.storage.whitelist import Whitelist
    office.publish()
    config = office.door()
    cfg = load_config(config)
    d = DaemonProcess(config).wait_ready()
    assert d.request({"op": "sync"})["ok"]          # version 1 is applied on disk now
    d.terminate()
    clock = FakeClock(wall=time.time() + 71 * 3600)
    logw = LogWriter(EventLog(cfg.storage.eventlog_path, cfg.door.id), wall=clock.wall)
    logw.start()
    out = DoorOutputs(cfg.gpio, cfg.door.fail_mode, factory)
    engine = Engine(cfg, Whitelist(cfg.storage.whitelist_path, load_key_file(cfg.storage.key_file)),
                    out, logw, clock)
    try:
        for _ in range(3 * 60):                         # three hours of minute checks
            engine.tick(clock.monotonic())
            clock.advance(60)
        logw.last_future.result(5)
    finally:
        logw.stop()
        out.close()
    stale = [e["reason"] for e in events(config, "sync.stale")]
    assert stale == ["whitelist is 72 h old (maximum 72 h)"]     # once, the minute it passed


def test_sync_needs_a_site_key_file(tmp_path):
    config = write_sim_config(tmp_path / "d")
    config.write_text(config.read_text() + '\n[sync]\nurl = "file:///nowhere"\n')
    d = DaemonProcess(config)
    assert d.proc.wait(20) == 1
    assert "key file has no site link" in d.stderr()
    d.close()


def test_a_door_on_another_doors_key_file_is_refused(office):
    """door.id says one door, the key file another: check-config and start both stop
    with exit 2, naming both ids (it would apply the other door's bundles and upload
    its log under a name the office does not expect)."""
    from click.testing import CliRunner

    from accessd.cli.daemon import main as accessd_main
    office.site.door_add("door-a2", "bldg-a")
    config = office.door("door-a2")
    # door-a1's key file installed on door-a2
    write_key_file(config.parent / "keys/door-keys.json", door_keys(office.site, "door-a1"),
                   overwrite=True)
    r = CliRunner().invoke(accessd_main, ["check-config", "--config", str(config)])
    assert r.exit_code == 2
    assert "made for door 'door-a1'" in r.output and "door.id is 'door-a2'" in r.output
    d = DaemonProcess(config)
    assert d.proc.wait(20) == 2
    assert "made for door 'door-a1'" in d.stderr() and "'door-a2'" in d.stderr()
    d.close()
    # its own key file: fine
    write_key_file(config.parent / "keys/door-keys.json", door_keys(office.site, "door-a2"),
                   overwrite=True)
    assert CliRunner().invoke(accessd_main, ["check-config", "--config",
                                             str(config)]).exit_code == 0
