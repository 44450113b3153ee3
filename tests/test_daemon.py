"""The real daemon in a subprocess: notify protocol, control socket, signals, restarts."""

import json
import os
import signal
import socket
import sqlite3
import stat
import threading


from accessd.config import load_config
from accessd.control import Client
from accessd.errors import DaemonUnavailable
from accessd.storage.eventlog import open_reader, verify_chain
from accessd.storage.keys import load_key_file
from accessd.storage.whitelist_admin import WhitelistAdmin
from accessd.testing import DaemonProcess

UID = "04A1B2C3"


def enrol(config, kind="nfc", value=UID, **kw):
    cfg = load_config(config)
    admin = WhitelistAdmin(cfg.storage.whitelist_path, load_key_file(cfg.storage.key_file))
    try:
        return admin.enroll(kind, value, "holder", **kw)
    finally:
        admin.close()


def test_notify_ready_watchdog_stopping(sim_config):
    d = DaemonProcess(sim_config, watchdog_usec=200_000)
    msg = d.wait_for("READY=1")
    assert "STATUS=door test-door ready, 0 credentials" in msg
    d.wait_for("WATCHDOG=1")
    d.proc.send_signal(signal.SIGTERM)
    d.wait_for("STOPPING=1")
    assert d.terminate() == 0


def test_tap_granted_and_denied_through_the_socket(sim_config):
    rec = enrol(sim_config)
    d = DaemonProcess(sim_config).wait_ready()
    try:
        ok = d.request({"op": "sim", "input": "tap", "uid": UID.lower()})
        assert ok["decision"] == "granted" and ok["relay"] == "unlocked"
        assert ok["credential"] == rec.credential_id
        no = d.request({"op": "sim", "input": "tap", "uid": "04FFFFFF"})
        assert no["decision"] == "denied" and no["reason"] == "denied: unknown credential"
        # the replies came after commit: the records are already in the file
        rows = list(open_reader(load_config(sim_config).storage.eventlog_path).execute(
            "SELECT seq, kind FROM events WHERE seq IN (?, ?)", (ok["seq"], no["seq"])))
        assert [r["kind"] for r in rows] == ["access.granted", "access.denied"]
    finally:
        d.terminate()


def test_control_socket_rejects_bad_requests_and_keeps_running(daemon):
    cfg = load_config(daemon.config)
    mode = stat.S_IMODE(os.stat(cfg.api.socket).st_mode)
    assert mode == 0o660
    with Client(cfg.api.socket) as c:
        bad = [
            ("not json", "line 1: malformed JSON"),
            ("[1, 2]", "line 2: request must be a JSON object"),
            ('{"op": "fly"}', "line 3: unknown op 'fly'"),
            ('{"nop": 1}', "line 4: missing field 'op'"),
            ('{"op": "sim", "input": "tap", "uid": "zz"}', "line 5: nfc UID must be hexadecimal"),
            ('{"op": "sim", "input": "tap"}', "line 6: missing field 'uid'"),
            ('{"op": "sim", "input": "pin", "keys": "12x#"}', "line 7: field 'keys' must be"),
            ('{"op": "sim", "input": "door", "state": "ajar"}', "line 8: field 'state' must be one of open, closed"),
            ('{"op": "capture", "timeout": -3}', "line 9: field 'timeout' must be"),
            ('{"op": "sim", "input": "smoke"}', "line 10: field 'input' must be one of"),
            ('{"op": "sim", "input": "tap", "uid": "04A1B2C3", "reader": "back"}',
             "line 11: no reader named 'back'"),
            ("[" * 30000 + "]" * 30000, "line 12: request nested deeper than 16 levels"),
            ('{"op": "status", "x": "' + "[" * 30000 + '"}', None),   # brackets in a string
        ]
        for line, err in bad:
            c.sock.sendall(line.encode() + b"\n")
            reply = json.loads(c._rfile.readline())
            if err is None:
                assert reply["ok"] is True, reply
                continue
            assert reply["ok"] is False and err in reply["error"], (line, reply)
        assert c.request({"op": "status"})["ok"] is True
    assert "Traceback" not in daemon.stderr() and "internal error" not in daemon.stderr()
    # an over-long line closes that connection only
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(cfg.api.socket))
    s.sendall(b"x" * (70 * 1024) + b"\n")
    reply = json.loads(s.makefile("rb").readline())
    assert "longer than" in reply["error"]
    s.close()
    assert daemon.request({"op": "status"})["ok"] is True


def test_sim_inputs_drive_gpiozero_pins_and_are_logged(daemon):
    assert daemon.request({"op": "sim", "input": "door", "state": "open"})["alarms"] == ["door.forced"]
    r = daemon.request({"op": "sim", "input": "door", "state": "closed"})
    assert r["alarms"] == [] and r["door_open"] is False
    assert daemon.request({"op": "sim", "input": "rex"})["relay"] == "unlocked"
    assert daemon.request({"op": "sim", "input": "tamper", "state": "on"})["alarms"] == ["tamper"]
    kinds = [r["kind"] for r in open_reader(load_config(daemon.config).storage.eventlog_path)
             .execute("SELECT kind FROM events ORDER BY seq")]
    assert kinds == ["daemon.started", "door.forced", "door.closed", "rex", "tamper"]


def test_remote_unlock_is_logged_with_the_callers_uid(daemon):
    r = daemon.request({"op": "unlock"})
    assert r["ok"] and r["relay"] == "unlocked"
    row = open_reader(load_config(daemon.config).storage.eventlog_path).execute(
        "SELECT reason FROM events WHERE seq = ?", (r["seq"],)).fetchone()
    assert row["reason"].startswith(f"remote unlock by uid {os.getuid()}")


def test_restart_continues_the_chain(sim_config):
    enrol(sim_config)
    seqs = []
    for _ in range(2):
        d = DaemonProcess(sim_config).wait_ready()
        seqs.append(d.request({"op": "sim", "input": "tap", "uid": UID})["seq"])
        assert d.terminate() == 0
    conn = open_reader(load_config(sim_config).storage.eventlog_path)
    kinds = [r["kind"] for r in conn.execute("SELECT kind FROM events ORDER BY seq")]
    assert kinds == ["daemon.started", "access.granted", "daemon.stopped"] * 2
    assert seqs == [2, 5] and verify_chain(conn).ok


def test_second_sigint_exits_at_once_when_shutdown_is_stuck(sim_config):
    """The log is locked by another process, so the orderly shutdown waits on the
    flush; a second SIGINT must end the daemon right away with exit code 130."""
    d = DaemonProcess(sim_config).wait_ready()
    blocker = sqlite3.connect(load_config(sim_config).storage.eventlog_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        def tap():
            try:
                d.request({"op": "sim", "input": "tap", "uid": UID})
            except DaemonUnavailable:
                pass  # the forced exit cuts this connection
        t = threading.Thread(target=tap)
        t.start()
        d.proc.send_signal(signal.SIGINT)
        d.wait_for("STOPPING=1")
        assert d.proc.poll() is None            # still flushing
        d.proc.send_signal(signal.SIGINT)
        assert d.proc.wait(3) == 130
        assert "second SIGINT" in d.stderr()
        t.join(15)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        d.close()


def test_second_daemon_on_the_same_socket_is_refused(daemon):
    d2 = DaemonProcess(daemon.config)
    assert d2.proc.wait(20) == 1
    assert "another accessd is already listening" in d2.stderr()
    d2.close()


def test_daemon_refuses_a_whitelist_from_another_key_file(sim_config):
    enrol(sim_config)
    from accessd.storage.keys import generate, write_key_file
    write_key_file(sim_config.parent / "keys/door-keys.json", generate(), overwrite=True)
    d = DaemonProcess(sim_config)
    assert d.proc.wait(20) == 1
    assert "sealed under another key file" in d.stderr()
    d.close()


def test_nothing_in_the_data_dir_or_the_logs_holds_a_credential_in_clear(sim_config):
    uid, pin, fob = "04A1B2C3D4E5F6", "739146", "12648430"
    enrol(sim_config, "nfc", uid)
    enrol(sim_config, "pin", pin)
    enrol(sim_config, "fob", fob)
    d = DaemonProcess(sim_config).wait_ready()
    try:
        assert d.request({"op": "sim", "input": "tap", "uid": uid})["decision"] == "granted"
        assert d.request({"op": "sim", "input": "tap", "uid": "04C0FFEE"})["decision"] == "denied"
        assert d.request({"op": "sim", "input": "pin", "keys": pin + "#"})["decision"] == "granted"
        assert d.request({"op": "sim", "input": "fob", "number": fob})["decision"] == "granted"
        cap = threading.Thread(target=lambda: d.request({"op": "capture", "timeout": 10}))
        cap.start()
        for _ in range(50):  # until the capture request is queued before a tap
            if d.request({"op": "sim", "input": "tap", "uid": "04BADBAD"}).get("captured"):
                break
        cap.join(15)
    finally:
        d.terminate()
    data = load_config(sim_config).storage.data_dir
    blobs = b"".join(p.read_bytes() for p in data.iterdir()) + d.stderr_path.read_bytes()
    for secret in (uid, uid.lower(), "04C0FFEE", "04BADBAD", pin, fob):
        assert secret.encode() not in blobs, secret
    for raw in (bytes.fromhex(uid), bytes.fromhex("04C0FFEE")):
        assert raw not in blobs


def test_every_reader_kind_through_its_real_library_in_the_daemon(tmp_path):
    """sim tap -> nfcpy udp link, sim fob -> RDM6300 frames on a pty (pyserial),
    sim pin -> matrix keypad on mock pins, sim fob on the Wiegand reader -> pulses."""
    from accessd.testing import write_sim_config
    config = write_sim_config(tmp_path / "real", real_readers=True)
    nfc = enrol(config, "nfc", "04A1B2C3D4E5F6")
    fob = enrol(config, "fob", "12648430")
    pin = enrol(config, "pin", "2468")
    d = DaemonProcess(config).wait_ready()
    try:
        r = d.request({"op": "sim", "input": "tap", "uid": "04A1B2C3D4E5F6"})
        assert r["decision"] == "granted" and r["credential"] == nfc.credential_id, r
        r = d.request({"op": "sim", "input": "fob", "number": "12648430"})
        assert r["decision"] == "granted" and r["credential"] == fob.credential_id, r
        r = d.request({"op": "sim", "input": "pin", "keys": "2468#"})
        assert r["decision"] == "granted" and r["credential"] == pin.credential_id, r
        r = d.request({"op": "sim", "input": "fob", "number": "12648430", "reader": "gate"})
        assert r["decision"] == "granted", r
        r = d.request({"op": "sim", "input": "pin", "keys": "9#", "reader": "gate"})
        assert r["decision"] == "invalid" and "too short" in r["reason"]
        st = d.request({"op": "status"})
        health = {h["name"]: h for h in st["readers"]}
        assert set(health) == {"front-nfc", "front-fob", "front-keypad", "gate"}
        assert all(h["state"] == "ok" and h["last_seen"] for h in health.values()), health
        # enrolment capture from a real reader
        cap = {}
        t = threading.Thread(target=lambda: cap.update(d.request({"op": "capture", "timeout": 20})))
        t.start()
        for _ in range(20):
            if d.request({"op": "sim", "input": "fob", "number": "777"}).get("captured"):
                break
        t.join(30)
        # its kind and fingerprint; never the number, which is the whole credential of a fob
        assert cap["kind"] == "fob" and cap["fingerprint"].startswith("fp:")
        assert "value" not in cap and "0000000309" not in json.dumps(cap)
    finally:
        d.terminate()
    rows = [r["detail"] for r in open_reader(load_config(config).storage.eventlog_path).execute(
        "SELECT detail FROM events WHERE kind = 'access.granted'")]
    readers = [json.loads(x)["reader"] for x in rows]
    assert readers == ["front-nfc", "front-fob", "front-keypad", "gate"]


def test_modes_and_fire_release(sim_config):
    enrol(sim_config)
    d = DaemonProcess(sim_config).wait_ready()
    try:
        r = d.request({"op": "mode", "mode": "held-open"})
        assert r["ok"] and r["relay"] == "unlocked"
        st = d.request({"op": "sim", "input": "door", "state": "open"})
        assert st["alarms"] == [] and st["relay"] == "unlocked"          # moving day: no alarm
        d.request({"op": "sim", "input": "door", "state": "closed"})
        assert d.request({"op": "mode", "mode": "normal"})["relay"] == "locked"
        r = d.request({"op": "mode", "mode": "lockdown"})
        assert d.request({"op": "sim", "input": "tap", "uid": UID})["reason"] == \
            "denied: door locked down"
        assert "must be one of normal, lockdown, held-open" in \
            d.request({"op": "mode", "mode": "party"})["error"]
        st = d.request({"op": "sim", "input": "fire", "state": "on"})
        assert st["relay"] == "unlocked" and "fire.release" in st["alarms"]
        st = d.request({"op": "sim", "input": "fire", "state": "off"})
        assert st["relay"] == "locked" and st["alarms"] == []
    finally:
        d.terminate()
    conn = open_reader(load_config(sim_config).storage.eventlog_path)
    kinds = [r["kind"] for r in conn.execute("SELECT kind FROM events ORDER BY seq")]
    assert kinds.count("door.mode") == 3 and "fire.release" in kinds and "fire.cleared" in kinds
    reasons = [r["reason"] for r in conn.execute("SELECT reason FROM events WHERE kind='door.mode'")]
    assert reasons[0].startswith("mode normal -> held-open by uid")
