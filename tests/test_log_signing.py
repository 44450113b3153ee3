"""Every log the office loads is its door's own: a door signs each batch it uploads
with its own key, and the office refuses what anyone else wrote into the store."""

import gzip
import json
import os
import subprocess
import sys

from accessd.storage.eventlog import GENESIS, record_hash
from accessd.sync.batch import encode

from .test_office_loop import _door_with_taps, upload


def forged_log(door, credential, n=3):
    """A well-made log (its hash chain intact) that no door wrote: grants to a resident."""
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        r = {"seq": seq, "ts": f"2026-11-23T03:0{seq}:00.000Z", "door": door,
             "kind": "access.granted", "credential": credential, "reason": "granted",
             "detail": "{}", "prev_hash": prev, "log": "20261123T030000Z-deadbeef"}
        r["hash"] = prev = record_hash(*(r[k] for k in ("seq", "ts", "door", "kind",
                                                          "credential", "reason", "detail",
                                                          "prev_hash")))
        rows.append(r)
    return rows


def ctl(site_dir, *args):
    return subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", "--site",
                           str(site_dir), *args], capture_output=True, text=True, timeout=120)


def test_logs_written_into_the_store_by_someone_else_are_refused(tmp_path):
    site, store, config = _door_with_taps(tmp_path)
    site.door_add("door-b", "g")                 # a door that never uploaded anything
    anna = site.person_add("Anna Berg", "12A", "resident")
    card = site.credential_add(anna, "nfc", "04A1B2C3")["id"]
    site.store_url_set(store.url)
    site.close()
    assert upload(config).returncode == 0         # door-a's own log, signed by door-a
    name = "logs/{door}/20261123T030000Z-deadbeef/000000000001-000000000003.ndjson.gz"
    # 1. a whole log under a door the site does not have, in the old unsigned format
    store.put(name.format(door="door-x"), gzip.compress(
        "".join(json.dumps(r) + "\n" for r in forged_log("door-x", card)).encode()))
    # 2. an unsigned log for a real door that never uploaded
    store.put(name.format(door="door-b"), gzip.compress(
        "".join(json.dumps(r) + "\n" for r in forged_log("door-b", card)).encode()))
    # 3. the same, signed, but with a key that is not door-b's
    store.put(name.format(door="door-b").replace("-000000000003", "-000000000004"),
              encode("door-b", "20261123T030000Z-deadbeef", forged_log("door-b", card, 4),
                     os.urandom(32)))
    # 4. door-a's own genuine batch, copied under door-b's name
    genuine = store.list("logs/door-a")[0]
    store.put(genuine.replace("door-a", "door-b"), store.get(genuine))

    r = ctl(tmp_path / "site", "logs", "pull")
    assert r.returncode == 1, r.stdout + r.stderr
    said = r.stdout
    assert "door-a: 1 batch," in said and "door-a: " in said and "chain intact" in said
    assert ("logs/door-x/20261123T030000Z-deadbeef/000000000001-000000000003.ndjson.gz: "
            "unsigned: not from a door that signs its uploads") in said
    assert said.count("REFUSED, not loaded:") == 4
    assert said.count("not signed with the key of door 'door-b'") == 2   # 3 and 4
    # none of it reached the office's records
    shown = json.loads(ctl(tmp_path / "site", "logs", "show", "--json").stdout)
    assert {e["door"] for e in shown} == {"door-a"}
    assert not any(e["person"] == "Anna Berg (12A)" for e in shown)
    # the doctor: door-b has sent nothing of its own; door-x is named as not ours
    r = ctl(tmp_path / "site", "site", "doctor", "--json")
    assert r.returncode == 1
    rows = {d["door"]: d for d in json.loads(r.stdout)}
    assert "no log from this door yet" in rows["door-b"]["problems"]
    assert any("uploaded batches refused: " in p for p in rows["door-b"]["problems"])
    assert rows["door-x"]["problems"] == [
        "not a door of this site: 1 uploaded batch under its name refused"]
    assert not any("refused" in p or "no log" in p for p in rows["door-a"]["problems"])
    # and every pull says it again
    assert ctl(tmp_path / "site", "logs", "pull").stdout.count("REFUSED") == 4


def test_a_door_whose_key_file_has_no_log_key_keeps_its_records_until_it_has_one(tmp_path):
    """A key file made before doors signed their logs: the upload stops with what to do,
    and nothing is acknowledged (the records wait in the door's log)."""
    from accessd.config import load_config
    from accessd.site.db import SiteDB
    from accessd.site.publish import door_keys
    from accessd.storage.keys import write_key_file
    from accessd.sync.upload import acked
    site, store, config = _door_with_taps(tmp_path)
    keys = door_keys(site, "door-a")
    key_file = tmp_path / "door-a/keys/door-keys.json"
    write_key_file(key_file, keys.__class__(keys.lookup, keys.seal, keys.site),
                   overwrite=True)
    r = upload(config)
    assert r.returncode == 1 and "this key file has no log key" in r.stderr
    assert store.list("logs") == [] and acked(load_config(config).storage.data_dir) == 0
    write_key_file(key_file, keys, overwrite=True)   # the office's new key file
    assert upload(config).returncode == 0
    site.close()
    from accessd.site import intake
    site = SiteDB.open(tmp_path / "site")
    assert intake.pull(site, store)["door-a"].ok
    site.close()


def _pull(tmp_path, store):
    from accessd.site import intake
    from accessd.site.db import SiteDB
    site = SiteDB.open(tmp_path / "site")
    try:
        return intake.pull(site, store).get("door-a")
    finally:
        site.close()


def _reasons(config, kind):
    from accessd.config import load_config
    from accessd.storage.eventlog import open_reader
    conn = open_reader(load_config(config).storage.eventlog_path)
    try:
        return [r["reason"] for r in conn.execute(
            "SELECT reason FROM events WHERE kind = ? ORDER BY seq", (kind,))]
    finally:
        conn.close()


def test_a_data_directory_put_back_from_a_backup_starts_a_new_log(tmp_path):
    """The data directory is restored from last week's backup: the door goes on from
    its log's end then, under the same identity, with numbers the office already has.
    The upload notices (the store holds this door's own signed records that its log
    does not), the running door takes a new log identity, and everything is uploaded
    under it: the office loads every genuine record and sees no tampering (it once
    refused the new records as 'tampering?' while the door counted them delivered)."""
    import shutil

    from accessd.config import load_config
    from accessd.testing import DaemonProcess

    from .test_office_loop import _taps
    site, store, config = _door_with_taps(tmp_path, 5)
    site.close()
    data = load_config(config).storage.data_dir
    assert upload(config).returncode == 0
    assert _pull(tmp_path, store).ok
    shutil.copytree(data, tmp_path / "backup")            # the nightly backup
    _taps(config, 8)
    assert upload(config).returncode == 0
    first = _pull(tmp_path, store)
    assert first.ok and first.added > 8
    shutil.rmtree(data)
    shutil.copytree(tmp_path / "backup", data)            # put back after a disk failure
    d = DaemonProcess(config).wait_ready()
    try:
        for _ in range(4):                                # genuine, after the restore
            d.request({"op": "sim", "input": "tap", "uid": "04000001"})
        old_log = d.request({"op": "status"})["log"]["id"]
        r = upload(config)                                # while the door runs
        assert r.returncode == 0, r.stderr
        assert "put back from a backup" in r.stderr and "has a new identity" in r.stderr
        new_log = d.request({"op": "status"})["log"]["id"]
        assert new_log != old_log
    finally:
        d.terminate()
    assert upload(config).returncode == 0                 # daemon.stopped too
    rep = _pull(tmp_path, store)
    assert rep.ok, rep                                    # no "tampering?", no gap
    assert new_log in rep.logs
    from accessd.site.db import SiteDB
    site = SiteDB.open(tmp_path / "site")
    after = [c for (c,) in site.db.execute(
        "SELECT count(*) FROM events WHERE door = 'door-a' AND log = ? AND "
        "kind = 'access.denied' AND credential LIKE 'fp:%'", [new_log])]
    site.close()
    assert after == [4 + 5]               # the backup's 5 taps and the 4 after the restore
    reset = _reasons(config, "log.reset")
    assert len(reset) == 1 and "put back from a backup" in reset[0]


def test_a_restored_door_that_is_not_running_takes_a_new_log_at_its_next_start(tmp_path):
    import shutil

    from accessd.config import load_config

    from .test_office_loop import _taps
    site, store, config = _door_with_taps(tmp_path, 3)
    site.close()
    data = load_config(config).storage.data_dir
    assert upload(config).returncode == 0
    shutil.copytree(data, tmp_path / "backup")
    _taps(config, 3)
    assert upload(config).returncode == 0
    shutil.rmtree(data)
    shutil.copytree(tmp_path / "backup", data)
    r = upload(config)                                    # the door is stopped
    assert r.returncode == 1 and "start accessd (it gives it one at start)" in r.stderr
    st = _taps(config, 2)                                 # the next start: a new log
    r = upload(config)
    assert r.returncode == 0 and f"uploaded {st['log']['last_seq']} events" in r.stdout
    assert _pull(tmp_path, store).ok


def test_an_old_state_file_and_a_reset_log_neither_block_nor_skip(tmp_path):
    """An upload state from before log identities ({"acked_seq": N}) and a log that was
    reset since: every record of the new log is uploaded, log.reset and all (it was
    taken for the new log's: the first N records were skipped, or with N beyond its end
    the upload stopped for good, restart or not)."""
    from accessd.config import load_config

    from .test_office_loop import _taps
    for n, name in ((3, "short"), (500, "long")):
        site, store, config = _door_with_taps(tmp_path / name, 6)
        site.close()
        cfg = load_config(config)
        for f in cfg.storage.data_dir.glob("events.db*"):      # the log is reset
            f.unlink()
        (cfg.storage.data_dir / "upload-state.json").write_text('{"acked_seq": %d}' % n)
        st = _taps(config, 4)
        r = upload(config)
        assert r.returncode == 0, r.stderr
        assert f"uploaded {st['log']['last_seq']} events" in r.stdout
        rep = _pull(tmp_path / name, store)
        assert rep.ok and rep.added == st["log"]["last_seq"]


def test_an_upload_cut_off_before_it_was_acknowledged_is_not_taken_for_a_restore(tmp_path):
    """The door's own batches beyond what it acknowledged (the upload died after the
    store had them): the same records, so the same log; sent again, loaded once."""
    from accessd.config import load_config
    from accessd.sync.upload import read_state, state_path
    site, store, config = _door_with_taps(tmp_path, 6)
    site.close()
    assert upload(config).returncode == 0
    data = load_config(config).storage.data_dir
    log_id, last = read_state(data)
    state_path(data).write_text(json.dumps({"log_id": log_id, "acked_seq": 2}))
    r = upload(config)
    assert r.returncode == 0 and "new identity" not in r.stderr
    assert f"uploaded {last - 2} events" in r.stdout
    rep = _pull(tmp_path, store)
    assert rep.ok and len(rep.logs) == 1
