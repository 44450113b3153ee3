"""Bounded input: dates in one supported range, text without control characters and
of a sane length where it enters, foreign text escaped where it reaches a log or a
terminal. Each refusal leaves what was stored as it was."""

import json
import socket
import threading

from click.testing import CliRunner

from accessd.cli import accessctl

from .helpers import setup_site


def ctl(site, *args):
    return CliRunner().invoke(accessctl.main, ["--site", str(site), *args])


def _site(tmp_path, tz="Asia/Shanghai"):
    site = tmp_path / "site"
    setup_site(site, "site", "init", "riverside")
    setup_site(site, "site", "timezone", tz)          # east of UTC, as the seed sites are
    setup_site(site, "group", "add", "bldg-a")
    setup_site(site, "door", "add", "door-a", "--group", "bldg-a")
    person = json.loads(setup_site(site, "person", "add", "--name", "Anna Berg", "--unit",
                                   "12A", "--group", "bldg-a", "--json"))["person"]
    return site, person


def test_dates_outside_1970_to_9999_are_refused_before_anything_is_stored(tmp_path):
    """'--valid-from 0001-01-01' east of UTC was stored and then crashed list and
    person show for the whole site; '--valid-until 9999-12-31' (the usual 'no end')
    crashed enroll, pass issue and the CSV import."""
    site, person = _site(tmp_path)
    before = ctl(site, "list", "--json").output
    r = ctl(site, "enroll", "--person", person, "--kind", "nfc", "--uid", "04A1B2C3",
            "--valid-from", "0001-01-01")
    assert r.exit_code == 2 or r.exit_code == 1
    assert "dates are from 1970-01-01 to 9999-12-31" in r.output and "Traceback" not in r.output
    assert ctl(site, "list", "--json").output == before          # nothing stored
    r = ctl(site, "enroll", "--person", person, "--kind", "nfc", "--uid", "04A1B2C3",
            "--valid-until", "9999-12-31")
    assert r.exit_code == 0, r.output
    for args in (("list",), ("person", "show", person), ("publish",)):
        r = ctl(site, *args)
        assert r.exit_code == 0 and "Traceback" not in r.output, (args, r.output)
    assert "9999-12-31 24:00" in ctl(site, "list").output
    r = ctl(site, "logs", "show", "--since", "0001-01-01")
    assert r.exit_code != 0 and "dates are from 1970-01-01" in r.output
    r = ctl(site, "pass", "issue", "--group", "bldg-a", "--for", "Guest", "--until",
            "2300-01-01", "--out", str(tmp_path / "p.png"))
    assert r.exit_code != 0 and "2106-02-07 at the latest" in r.output, r.output
    csv = tmp_path / "r.csv"
    csv.write_text("name,unit,role,phone,kind,uid,groups,valid_from,valid_until\n"
                   "Bo Lind,14C,resident,,nfc,04C0FFEE,bldg-a,,9999-12-31\n"
                   "Cy Dahl,15D,resident,,nfc,04C0FFEF,bldg-a,0001-01-01,\n")
    r = ctl(site, "import", str(csv))
    assert r.exit_code == 1 and ":3:" in r.output and "1970-01-01" in r.output
    r = ctl(site, "import", str(csv), "--skip-bad")
    assert r.exit_code == 0 and "1 credential" in r.output


def test_names_labels_and_notes_with_control_characters_or_too_long_are_refused(tmp_path):
    site, person = _site(tmp_path)
    for args, needle in (
            (("person", "add", "--name", "Mallory\n2026-12-05 12:00:00 door-a  ALARM #1 "
              "door forced: x"), "control character (U+000A) at position 8"),
            (("person", "add", "--name", "Tab\tName"), "control character (U+0009)"),
            (("person", "add", "--name", "x" * 100_000), "100000 characters long; at most 100"),
            (("person", "add", "--name", "Ok", "--unit", "12\u2028A"), "U+2028"),
            (("person", "edit", person, "--name", "Anna\x00Berg"), "U+0000"),
            (("group", "add", "bldg-b", "--description", "a\rb"), "U+000D"),
            (("pass", "issue", "--group", "bldg-a", "--for", "Guest\nALARM", "--until", "2d",
              "--out", str(tmp_path / "p.png")), "U+000A")):
        r = ctl(site, *args)
        assert r.exit_code == 1 and needle in r.output and "Traceback" not in r.output, \
            (args, r.output)
    people = json.loads(ctl(site, "person", "list", "--json").output)
    assert [p["name"] for p in people] == ["Anna Berg"]


def test_watch_plain_escapes_whatever_text_it_prints():
    from accessd.live.estate import plain_line
    line = {"type": "event", "ts": "2026-12-05T04:00:00.000Z", "door": "door-a",
            "kind": "access.granted", "credential": "c1",
            "person": "Mallory\n2026-12-05 12:00:00 door-a  ALARM #1 door forced: x",
            "reason": "granted\x00"}
    text = plain_line(line, "UTC")
    assert "\n" not in text and "\x00" not in text and "\\n2026-12-05" in text


def test_a_store_status_line_with_a_nul_is_logged_escaped_and_reaches_the_office(tmp_path):
    """A store whose status line holds a NUL: the door's sync.failed record carries it
    escaped, and the office loads that record (it once dropped it: a permanent gap)."""
    from accessd.config import load_config
    from accessd.site import intake
    from accessd.sync.upload import upload

    from .test_sync import Office
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(65536)
            c.sendall(b"HTTP/1.1 2\x0000 Fine\r\nContent-Length: 0\r\n\r\n")
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    office = Office(tmp_path)
    office.publish()
    config = office.door()
    config.write_text(config.read_text().replace(
        f'url = "{office.store.url}"', f'url = "http://127.0.0.1:{srv.getsockname()[1]}/"'))
    from accessd.testing import DaemonProcess
    d = DaemonProcess(config).wait_ready()
    try:
        r = d.request({"op": "sync"})
        assert not r["ok"] and "not a valid HTTP answer" in r["result"]
    finally:
        d.terminate()
    srv.close()
    failed = [e for e in d.events() if e["kind"] == "sync.failed"]
    assert failed and all("\x00" not in e["reason"] for e in failed)
    assert any("\\x00" in e["reason"] for e in failed)
    cfg = load_config(config)
    upload(cfg, office.store)
    rep = intake.pull(office.site, office.store)["door-a1"]
    assert rep.ok, rep
    office.site.close()


def test_tracebacks_once_seen_are_messages(tmp_path, daemon):
    """sim qr @IMAGE.png, a 5000-digit number on the control socket, an empty CSV kind,
    and a daemon's refusal printed by accessctl without the socket's 'line 1:'."""
    png = tmp_path / "pass.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    r = CliRunner().invoke(accessctl.main, ["--config", str(daemon.config), "sim", "qr",
                                            f"@{png}"])
    assert r.exit_code == 1 and "is not text (an image of the code?)" in r.output
    with daemon.client() as c:
        c.sock.sendall(b'{"op": "mode", "mode": ' + b"9" * 5000 + b"}\n")
        got = json.loads(c._rfile.readline())
        assert not got["ok"] and got["error"].startswith("line 1: malformed JSON")
        assert c.request({"op": "status"})["ok"]          # the connection still serves
    assert "Traceback" not in daemon.stderr() and "internal error" not in daemon.stderr()
    r = CliRunner().invoke(accessctl.main, ["--config", str(daemon.config), "sim", "tap",
                                            "04A1B2C3", "--reader", "nope"])
    assert r.exit_code == 1 and "no reader named 'nope'" in r.output
    assert "line 1" not in r.output
    site, _ = _site(tmp_path)
    csv = tmp_path / "r.csv"
    csv.write_text("name,unit,role,phone,kind,uid,groups,valid_from,valid_until\n"
                   "Bo Lind,14C,resident,,,04C0FFEE,bldg-a,,\n")
    r = ctl(site, "import", str(csv))
    assert r.exit_code == 1 and ":2: kind is empty: give nfc or fob for the uid" in r.output


def test_cli_surprises_are_gone(tmp_path):
    """schedule add no longer replaces silently; import --skip-bad with every row bad
    exits 1; logs show --person takes a unique name; a duress PIN is marked; explain
    names a holiday; a site door without its key file is told to get it from the
    office."""
    site, person = _site(tmp_path, tz="UTC")
    assert ctl(site, "schedule", "add", "delivery", "--window", "mon-fri 08:00-16:00"
               ).exit_code == 0
    r = ctl(site, "schedule", "add", "delivery", "--window", "daily 00:00-24:00")
    assert r.exit_code == 1 and "already exists" in r.output and "--replace" in r.output
    assert "fri 08:00-16:00" in ctl(site, "schedule", "list").output   # unchanged
    assert ctl(site, "schedule", "add", "delivery", "--window", "daily 07:00-18:00",
               "--replace").exit_code == 0
    csv = tmp_path / "bad.csv"
    csv.write_text("name,unit,role,phone,kind,uid,groups,valid_from,valid_until\n"
                   ",1A,resident,,,,bldg-a,,\n")
    r = ctl(site, "import", str(csv), "--skip-bad")
    assert r.exit_code == 1 and "nothing imported" in r.output
    r = ctl(site, "logs", "show", "--person", "anna berg")
    assert r.exit_code == 0, r.output
    other = json.loads(setup_site(site, "person", "add", "--name", "Anna Berg", "--unit",
                                  "3B", "--json"))["person"]
    r = ctl(site, "logs", "show", "--person", "Anna Berg")
    assert r.exit_code == 1 and "2 people are named 'Anna Berg'" in r.output and other in r.output
    assert ctl(site, "logs", "show", "--person", "Anna Berg (3B)").exit_code == 0
    r = CliRunner().invoke(accessctl.main, ["--site", str(site), "enroll", "--person", person,
                                            "--kind", "pin", "--pin-stdin", "--duress"],
                           input="739102\n")
    assert r.exit_code == 0 and "duress PIN" in r.output, r.output
    assert "duress: opens and raises a silent alarm" in ctl(site, "person", "show",
                                                            person).output
    card = json.loads(ctl(site, "enroll", "--person", person, "--kind", "nfc", "--uid",
                          "04A1B2C3", "--json").output)["id"]
    setup_site(site, "person", "edit", person, "--schedule", "delivery")
    setup_site(site, "holiday", "2026-12-25")
    r = ctl(site, "explain", card, "--door", "door-a", "--at", "2026-12-25T10:00")
    assert "2026-12-25 is a holiday: schedules are off all day" in r.output, r.output
    from accessd.testing import write_sim_config
    cfg = write_sim_config(tmp_path / "door", keys=False, door_id="door-a")
    cfg.write_text(cfg.read_text() + '\n[sync]\nurl = "file:///srv/store"\n')
    from accessd.cli.daemon import main as accessd_main
    r = CliRunner().invoke(accessd_main, ["check-config", "--config", str(cfg)])
    assert r.exit_code == 2 and "door keys door-a" in r.output and "keys init" not in r.output
