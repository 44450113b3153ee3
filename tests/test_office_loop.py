"""The whole office <-> door loop with real processes, and the log path's faults."""

import gzip
import json
import subprocess
import sys

from accessd.config import load_config
from accessd.site.db import SiteDB
from accessd.site.publish import door_keys
from accessd.storage.keys import write_key_file
from accessd.sync.store import FileStore
from accessd.testing import DaemonProcess, write_sim_config


def residents_csv(n: int) -> str:
    lines = ["name,unit,role,phone,kind,uid,groups,valid_from,valid_until"]
    for i in range(n):
        group = "bldg-a" if i % 2 == 0 else "bldg-b"
        lines.append(f"Resident {i},{100 + i // 4}{'ABCD'[i % 4]},resident,+47{i:08d},nfc,"
                     f"{0x04000000 + i:08X},{group},,")
    return "\n".join(lines) + "\n"


def upload(config):
    return subprocess.run([sys.executable, "-m", "accessd", "upload", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


def test_site_to_two_doors_and_back(tmp_path, site_at):
    """site init -> import 1,000 residents (200 on PostgreSQL) -> publish -> two door daemons pull and
    apply -> taps -> upload -> logs pull shows the taps with names: all real processes,
    with the site database in SQLite and in PostgreSQL."""
    store = tmp_path / "store"

    def ctl(*args, ok=True):
        """accessctl as staff run it: a process of its own."""
        r = subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", *site_at.args,
                            *args], capture_output=True, text=True, timeout=120)
        assert (r.returncode == 0) == ok, r.stdout + r.stderr
        return r.stdout

    ctl("site", "init", "riverside")
    ctl("group", "add", "bldg-a")
    ctl("group", "add", "bldg-b")
    ctl("door", "add", "door-a", "--group", "bldg-a")
    ctl("door", "add", "door-b", "--group", "bldg-b")
    csv = tmp_path / "residents.csv"
    n = 1000 if site_at.url is None else 200   # PostgreSQL at scale: scripts/bench
    csv.write_text(residents_csv(n))
    assert f"{n} people, {n} credentials, {n} grants added" in ctl("import", str(csv))
    published = json.loads(ctl("publish", "--store", store.as_uri(), "--json"))
    assert {p["group"]: p["credentials"] for p in published} == {"bldg-a": n // 2,
                                                                 "bldg-b": n // 2}

    doors = {}
    for door in ("door-a", "door-b"):
        config = write_sim_config(tmp_path / door, keys=False, door_id=door)
        config.write_text(config.read_text() + f'\n[sync]\nurl = "{store.as_uri()}"\n')
        ctl("door", "keys", door, "--out", str(tmp_path / door / "keys/door-keys.json"))
        doors[door] = config
    daemons = {d: DaemonProcess(c).wait_ready() for d, c in doors.items()}
    try:
        for door, d in daemons.items():
            assert d.request({"op": "sync"})["ok"]
            wl = d.request({"op": "status"})["whitelist"]
            assert (wl["credentials"], wl["version"]) == (n // 2, 1) and wl["age_hours"] < 1
        a, b = daemons["door-a"], daemons["door-b"]
        assert a.request({"op": "sim", "input": "tap", "uid": "04000000"})["decision"] == "granted"
        assert a.request({"op": "sim", "input": "tap", "uid": "04000001"})["decision"] == "denied"
        assert b.request({"op": "sim", "input": "tap", "uid": "04000001"})["decision"] == "granted"
        assert b.request({"op": "sim", "input": "tap", "uid": "04FFFFFF"})["decision"] == "denied"
        assert a.request({"op": "sim", "input": "tap", "uid": "04FFFFFF"})["decision"] == "denied"
    finally:
        for d in daemons.values():
            d.terminate()
    for config in doors.values():
        r = upload(config)
        assert r.returncode == 0 and "uploaded" in r.stdout, r.stderr
    # the site remembers the store publish used: logs pull reads it without --store
    pulled = ctl("logs", "pull")
    assert "door-a: 1 batch, 6 events added; chain intact" in pulled, pulled
    rows = json.loads(ctl("logs", "show", "--kind", "access.granted", "--json"))
    assert [(r["door"], r["person"]) for r in rows] == [("door-a", "Resident 0 (100A)"),
                                                        ("door-b", "Resident 1 (100B)")]
    denied = json.loads(ctl("logs", "show", "--door", "door-a", "--kind", "access.denied",
                            "--json"))
    assert denied[0]["person"] == "Resident 1 (100B)"   # a real resident at the wrong door
    report = json.loads(ctl("report", "--json"))
    assert {(r["door"], r["granted"], r["denied"]) for r in report} == {
        ("door-a", 1, 2), ("door-b", 1, 1)}
    # the same unknown card at both doors; a resident at the wrong door is not a stranger
    strangers = json.loads(ctl("report", "--strangers", "--json"))
    assert [(s["doors"], s["tries"], s["door_list"]) for s in strangers] == [
        (2, 2, ["door-a", "door-b"])]


def test_upload_resumes_and_is_idempotent_and_intake_finds_gaps_and_edits(tmp_path):
    site, store, config = _door_with_taps(tmp_path, 30)
    cfg = load_config(config)
    from accessd.sync.upload import acked, upload as do_upload
    first = do_upload(cfg, store, batch=10)
    assert first["batches"] >= 3 and acked(cfg.storage.data_dir) == first["acked_seq"]
    assert do_upload(cfg, store, batch=10)["events"] == 0          # nothing new: nothing sent
    # an interrupted upload: the state goes back, the same batches are sent again
    (cfg.storage.data_dir / "upload-state.json").write_text('{"acked_seq": 10}')
    again = do_upload(cfg, store, batch=10)
    assert again["acked_seq"] == first["acked_seq"]
    names = store.list("logs")
    assert len(names) == first["batches"]                          # same names: idempotent

    from accessd.site import intake
    res = intake.pull(site, store)
    assert res["door-a"].ok and res["door-a"].added == first["acked_seq"]
    assert intake.pull(site, store) == {}
    # a batch goes missing at the office, another is edited in the store: both are
    # reported (the edited one is refused: its door's signature no longer holds)
    site.db.execute("DELETE FROM events WHERE seq BETWEEN 1 AND 20")
    site.db.execute("DELETE FROM batches")
    edited = names[0]
    lines = [json.loads(x) for x in gzip.decompress(store.get(edited)).decode().splitlines()]
    lines[4]["reason"] = "nothing to see"          # (line 0 is the batch's header)
    store.put(edited, gzip.compress("".join(json.dumps(r) + "\n" for r in lines).encode()))
    store._path(names[1]).unlink()
    res = intake.pull(site, store)["door-a"]
    assert res.gaps == [(1, 20)] and not res.ok
    assert res.refused == [f"{edited}: not signed with the key of door 'door-a' (forged, "
                           "altered, or signed by another door)"]


def test_upload_without_a_store_and_with_a_bad_state_file(tmp_path):
    config = write_sim_config(tmp_path / "d")
    r = upload(config)
    assert r.returncode == 2 and "no store: set sync.url" in r.stderr
    d = DaemonProcess(config).wait_ready()
    d.terminate()
    cfg = load_config(config)
    (cfg.storage.data_dir / "upload-state.json").write_text("garbage")
    r = subprocess.run([sys.executable, "-m", "accessd", "upload", "--config", str(config),
                        "--store", (tmp_path / "store").as_uri()],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "not an upload state file" in r.stderr


def test_enrol_at_the_office_from_an_nfc_reader(tmp_path):
    """--nfc-reader reads the card through nfcpy (here its udp link and a card emulator)."""
    import threading
    from click.testing import CliRunner
    from accessd.cli import accessctl
    from accessd.hw.nfc_emulator import CardEmulator
    from accessd.testing import free_udp_port
    site = SiteDB.init(tmp_path / "site", "riverside")
    pid = site.person_add("Anna Berg", "12A", "resident")
    path = f"udp:localhost:{free_udp_port()}"
    card = threading.Thread(target=CardEmulator(path).present,
                            args=(bytes.fromhex("04A1B2C3D4E5F6"),), kwargs={"hold": 2.0})
    card.start()
    r = CliRunner().invoke(accessctl.main, ["--site", str(site.dir), "enroll", "--person", pid,
                                            "--kind", "nfc", "--nfc-reader", path,
                                            "--capture-timeout", "10"])
    card.join(15)
    assert r.exit_code == 0, r.output
    assert site.credential_holder("nfc", "04A1B2C3D4E5F6") == pid
    assert "04A1B2C3D4E5F6" not in r.output
    r = CliRunner().invoke(accessctl.main, ["--site", str(site.dir), "enroll", "--person", pid,
                                            "--kind", "nfc", "--nfc-reader", "tty:AMA0:pn532"])
    assert r.exit_code == 1 and "NFC reader" in r.output


def _door_with_taps(tmp_path, taps=12, site_at=None, earlier=()):
    """A site, its store, and a door that ran and was tapped `taps` times; `earlier`:
    records its log held before (PendingRecords)."""
    site = site_at.init() if site_at else SiteDB.init(tmp_path / "site", "riverside")
    site.group_add("g")
    site.door_add("door-a", "g")
    store = FileStore(tmp_path / "store")
    config = write_sim_config(tmp_path / "door-a", keys=False, door_id="door-a")
    write_key_file(tmp_path / "door-a/keys/door-keys.json", door_keys(site, "door-a"))
    config.write_text(config.read_text() + f'\n[sync]\nurl = "{store.url}"\n')
    if earlier:
        from accessd.storage.eventlog import EventLog
        log = EventLog(load_config(config).storage.eventlog_path, "door-a")
        log.append(list(earlier))
        log.close()
    _taps(config, taps)
    return site, store, config


def _taps(config, n):
    d = DaemonProcess(config).wait_ready()
    for _ in range(n):
        d.request({"op": "sim", "input": "tap", "uid": "04000000"})
    st = d.request({"op": "status"})
    d.terminate()
    import sqlite3
    conn = sqlite3.connect(load_config(config).storage.eventlog_path)
    st["log"]["last_seq"] = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    conn.close()                                   # with daemon.stopped, written at the end
    return st


def test_a_reset_log_is_uploaded_again_under_its_new_identity(tmp_path):
    from accessd.site import intake
    site, store, config = _door_with_taps(tmp_path)
    r = upload(config)
    assert r.returncode == 0 and "uploaded" in r.stdout
    cfg = load_config(config)
    for f in cfg.storage.data_dir.glob("events.db*"):   # the log is reset; the state file stays
        f.unlink()
    st = _taps(config, 3)
    r = upload(config)
    assert r.returncode == 0, r.stderr
    new_id = st["log"]["id"]
    assert f"uploaded {st['log']['last_seq']} events" in r.stdout          # not "uploaded 0"
    assert [n for n in store.list("logs") if f"/{new_id}/" in n]
    res = intake.pull(site, store)["door-a"]
    assert res.ok and len(res.logs) == 2 and new_id in res.logs, res


def test_a_log_that_lost_its_tail_gets_a_new_identity(tmp_path):
    import sqlite3

    from accessd.site import intake
    from accessd.storage.eventlog import open_reader
    site, store, config = _door_with_taps(tmp_path)
    assert upload(config).returncode == 0
    cfg = load_config(config)
    conn = sqlite3.connect(cfg.storage.eventlog_path)       # restored from an older backup
    last = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    conn.execute("DELETE FROM events WHERE seq > ?", (last - 5,))
    conn.commit()
    conn.close()
    r = upload(config)                                      # before the door noticed
    assert r.returncode == 1 and "records were lost. Restart accessd" in r.stderr
    st = _taps(config, 2)
    reset = [row["reason"] for row in open_reader(cfg.storage.eventlog_path).execute(
        "SELECT reason FROM events WHERE kind = 'log.reset'")]
    assert reset == [f"the event log ends at #{last - 5} but the office acknowledged #{last}: "
                     "records were lost; it is uploaded again from the start under a new "
                     "identity"]
    r = upload(config)
    assert r.returncode == 0 and f"uploaded {st['log']['last_seq']} events" in r.stdout
    res = intake.pull(site, store)["door-a"]
    assert res.ok and len(res.logs) == 2


def test_a_batch_replaced_after_loading_is_reported_as_tampering(tmp_path, site_at):
    from accessd.site import intake
    site, store, config = _door_with_taps(tmp_path, site_at=site_at)
    assert upload(config).returncode == 0
    assert intake.pull(site, store)["door-a"].ok
    name = store.list("logs")[0]
    lines = [json.loads(x) for x in gzip.decompress(store.get(name)).decode().splitlines()]
    rows = lines[1:-1]                       # (between the header and the signature)
    rows[0]["reason"] = "nothing happened"
    store.put(name, gzip.compress("".join(json.dumps(r) + "\n" for r in lines).encode()))
    res = intake.pull(site, store)["door-a"]
    assert not res.ok and len(res.tampered) == 1
    assert res.tampered[0].startswith(f"{name}: replaced after it was loaded on ")
    assert "different content (tampering?)" in res.tampered[0]
    kept = site.db.execute("SELECT reason FROM events WHERE seq = ?", [rows[0]["seq"]]).fetchone()
    assert kept[0] != "nothing happened"                     # what was loaded first is kept
    # the same record, its hash recomputed, signed by the door (one restored from an old
    # copy of itself, say) under another batch name: also caught
    from accessd.storage.eventlog import record_hash
    from accessd.sync.batch import encode
    r0 = rows[0]
    r0["hash"] = record_hash(r0["seq"], r0["ts"], r0["door"], r0["kind"], r0["credential"],
                             r0["reason"], r0["detail"], r0["prev_hash"])
    other = name.rsplit("/", 1)[0] + "/999999999990-999999999999.ndjson.gz"
    store.put(other, encode("door-a", r0["log"], [r0], site.keys.door_log_seed("door-a")))
    res = intake.pull(site, store)["door-a"]
    assert (r0["seq"], f"{other}: differs from record #{r0['seq']} loaded before "
                       "(tampering?); the first one is kept") in res.bad
    # and staff see it: logs pull says TAMPERED and exits 1
    rows[1]["reason"] = "edited again"
    store.put(name, gzip.compress("".join(json.dumps(r) + "\n" for r in lines).encode()))
    r = subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", *site_at.args,
                        "logs", "pull", "--store", store.url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"TAMPERED: {name}: replaced after it was loaded" in r.stdout


def test_the_nightly_upload_purges_what_the_office_has_and_is_older_than_the_door_keeps(
        tmp_path):
    """A door with 20 records 40 days old and a few new ones: `accessd upload` sends
    them all, then deletes the old ones (storage.retention_days = 30); the door's chain
    still verifies from its checkpoint, the office loads every record, and its own
    purge (retention 35 days) leaves the chain verifiable from its signed checkpoint."""
    import time

    from accessd.site import intake
    from accessd.storage.eventlog import PendingRecord, utc_iso
    old = utc_iso(time.time() - 40 * 86400)
    site, store, config = _door_with_taps(tmp_path, 3, earlier=[
        PendingRecord(old, "access.denied", None, "old", {}) for _ in range(20)])
    first_new = 21
    r = upload(config)
    assert r.returncode == 0, r.stderr
    assert "purged 20 uploaded records older than 30 days" in r.stdout, r.stdout
    assert upload(config).stdout.count("purged") == 0          # nothing more to purge
    v = subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", "--config", str(config),
                        "events", "--verify", "--json"], capture_output=True, text=True,
                       timeout=60)
    rep = json.loads(v.stdout)
    assert v.returncode == 0 and rep["ok"] and rep["first"] == first_new, v.stdout + v.stderr
    res = intake.pull(site, store)["door-a"]
    assert res.ok and res.added == rep["last"]                 # the office has them all
    intake.retention_set(site, 35)
    assert intake.purge(site)["events"] == first_new - 1
    assert intake.verify_door(site, "door-a", res.logs[0]) == ([], [])
