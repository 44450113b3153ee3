"""Signed QR passes: the format (core/passes.py), the office's issue/revoke/list,
and a door reading them from a serial QR scanner (pyserial on a pty) and deciding
them offline, with revocations reaching it in a real published bundle."""

import json
import time

import pytest
import segno
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accessd.cli import accessctl
from accessd.config import load_config
from accessd.core import passes
from accessd.errors import CredentialFormatError
from accessd.site.db import SiteDB
from accessd.site.publish import door_keys, publish
from accessd.storage.eventlog import open_reader
from accessd.storage.keys import write_key_file
from accessd.sync.store import open_store
from accessd.testing import SIM_READER, DaemonProcess, write_sim_config

NOW = 1_790_000_000


def a_pass(**kw):
    fields = dict(site="riverside", group="g", role="courier", label="DHL courier",
                  valid_from=NOW - 60, valid_until=NOW + 3600, uses=2)
    return passes.new_pass(**{**fields, **kw})


def test_a_pass_round_trips_and_fits_a_small_qr_code():
    key = Ed25519PrivateKey.generate()
    p = a_pass()
    text = passes.sign(p, key)
    assert text.startswith("AP1:") and set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ:")
    parsed, _, _ = passes.parse(text)
    assert parsed == p and len(p.pass_id) == 16
    qr = segno.make(text, error="m", micro=False)
    assert qr.mode == "alphanumeric" and qr.version <= 10
    assert passes.verify(text, key.public_key(), site="riverside", group="g") == (p, "")
    assert passes.parse(text.lower())[0] == p      # a scanner in lower-case mode


def test_forged_foreign_and_revoked_passes_are_refused_with_reasons():
    key = Ed25519PrivateKey.generate()
    p = a_pass()
    text = passes.sign(p, key)
    pk = key.public_key()
    other_site = passes.sign(p, Ed25519PrivateKey.generate())
    assert passes.verify(other_site, pk, site="riverside", group="g") == (None, passes.FORGED)
    body, sig = passes.parse(text)[1:]
    altered = passes.Pass(p.pass_id, p.valid_from, p.valid_until, 999, p.site, p.group,
                          p.role, p.label)      # more entries, the old signature
    import base64
    forged = "AP1:" + base64.b32encode(passes.payload(altered) + sig).decode().rstrip("=")
    assert passes.verify(forged, pk, site="riverside", group="g") == (None, passes.FORGED)
    got, reason = passes.verify(text, pk, site="riverside", group="h")
    assert got == p and reason == "denied: pass for door group 'g', not this door's ('h')"
    assert passes.verify(text, pk, site="riverside", group="g",
                         revoked=frozenset({p.pass_id})) == (p, passes.REVOKED)
    # signed by this site's key but naming another site: refused as well
    assert passes.verify(passes.sign(a_pass(site="elsewhere"), key), pk, site="riverside",
                         group="g") == (None, passes.FORGED)


@pytest.mark.parametrize("text,message", [
    ("https://example.com/item/4006381333931", "not an accessd pass"),
    ("AP1:", "pass too short"),
    ("AP1:!!!!", "not base32"),
    ("AP1:" + "A" * 200, "format version 0 is not known"),
    ("AP1:" + "B" * 2000, "pass text too long (2004 characters)"),
])
def test_text_that_is_not_a_pass_is_named_as_such(text, message):
    with pytest.raises(passes.PassFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        passes.parse(text)


def test_a_cut_short_pass_is_not_a_pass():
    text = passes.sign(a_pass(), Ed25519PrivateKey.generate())
    raw = passes.base64.b32decode(text[4:] + "=" * (-len(text[4:]) % 8))
    body = raw[:-64]
    cut = "AP1:" + passes.base64.b32encode(body[:30] + raw[-64:]).decode().rstrip("=")
    with pytest.raises(passes.PassFormatError, match="cut short in its"):
        passes.parse(cut)
    extra = "AP1:" + passes.base64.b32encode(body + b"xx" + raw[-64:]).decode().rstrip("=")
    with pytest.raises(passes.PassFormatError, match="2 bytes after its fields"):
        passes.parse(extra)


@pytest.mark.parametrize("kw,message", [
    ({"role": "resident"}, "pass role must be one of visitor, courier, contractor"),
    ({"uses": 0}, "pass entries must be 1-1000"),
    ({"valid_until": NOW - 120}, "pass must end after it starts"),
    ({"label": "x" * 41}, "pass label must be at most 40 bytes"),
])
def test_a_pass_with_bad_fields_is_not_issued(kw, message):
    with pytest.raises(CredentialFormatError, match=message):
        a_pass(**kw)


# ---- the office ---------------------------------------------------------------------

@pytest.fixture
def site(tmp_path):
    s = SiteDB.init(tmp_path / "site", "riverside")
    s.group_add("g")
    s.group_add("h")
    s.door_add("door-a", "g")
    s.door_add("door-h", "h")
    return s


def ctl(site, *args):
    return CliRunner().invoke(accessctl.main, ["--site", str(site.dir), *args])


def test_issue_writes_a_qr_code_and_keeps_no_pass_text(site, tmp_path):
    r = ctl(site, "pass", "issue", "--group", "g", "--for", "DHL courier", "--role",
            "courier", "--until", "8h", "--entries", "2", "--out", str(tmp_path / "dhl.png"),
            "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["pass"].startswith("pass-") and doc["entries"] == 2
    assert (tmp_path / "dhl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    p, _, _ = passes.parse(doc["text"])
    assert p.credential_id == doc["pass"] and p.group == "g" and p.uses == 2
    assert abs(p.valid_until - (time.time() + 8 * 3600)) < 120
    assert doc["text"].encode() not in (site.dir / "site.db").read_bytes()
    r = ctl(site, "pass", "issue", "--group", "g", "--for", "Ana", "--until", "2h",
            "--out", str(tmp_path / "ana.svg"))
    assert r.exit_code == 0 and "<svg" in (tmp_path / "ana.svg").read_text()
    r = ctl(site, "pass", "list")
    assert r.exit_code == 0 and "DHL courier" in r.output and "Ana" in r.output


@pytest.mark.parametrize("args,message", [
    (["--group", "nope", "--for", "x", "--until", "2h"], "no door group 'nope'"),
    (["--group", "g", "--for", "x", "--from", "4h", "--until", "2h"],
     "--until: must be after --from"),
    (["--group", "g", "--for", "x", "--until", "yesterday"], "--until: 'yesterday' is not a time"),
    (["--group", "g", "--for", "x", "--until", "2h", "--out", "p.jpg"], "--out: p.jpg: must end in"),
    (["--group", "g", "--for", "x", "--until", "2h", "--role", "resident"], "--role: 'resident' is not one of"),
    (["--group", "g", "--for", "x", "--until", "2h", "--entries", "0"], "--entries"),
    (["--group", "g", "--for", "x", "--from", "2020-01-01", "--until", "2020-01-02"],
     "the pass would already have ended"),
])
def test_issue_refuses_bad_input_and_issues_nothing(site, args, message):
    r = ctl(site, "pass", "issue", *args)
    assert r.exit_code in (1, 2) and message in r.output, r.output
    assert site.db.execute("SELECT count(*) FROM passes").fetchone()[0] == 0


def test_revoke_names_unknown_and_already_revoked_passes(site):
    p, _ = __import__("accessd.site.passes", fromlist=["issue"]).issue(
        site, group="g", role="visitor", label="Eve", valid_from=time.time(),
        valid_until=time.time() + 3600, uses=1)
    r = ctl(site, "pass", "revoke", p.credential_id)
    assert r.exit_code == 0 and "revoked; publish" in r.output
    r = ctl(site, "pass", "revoke", p.credential_id)
    assert r.exit_code == 1 and f"pass {p.pass_id} was already revoked by" in r.output
    r = ctl(site, "pass", "revoke", "pass-0000000000000000")
    assert r.exit_code == 1 and "no pass '0000000000000000'" in r.output
    assert "Eve" not in ctl(site, "pass", "list").output
    assert "revoked by" in ctl(site, "pass", "list", "--all").output


# ---- at the door: a QR scanner on a serial port, revocations in the bundle ----------

QR_READER = """
[[readers]]
name = "lobby-qr"
kind = "qr-serial"
port = "sim"
"""


def test_a_door_scans_passes_and_refuses_the_bad_ones_with_reasons(site, tmp_path):
    from accessd.site import passes as site_passes
    store = f"file://{tmp_path}/store"
    config = write_sim_config(tmp_path / "door-a", keys=False, door_id="door-a",
                              readers=SIM_READER + QR_READER)
    config.write_text(config.read_text() + f'\n[sync]\nurl = "{store}"\n'
                      "interval_seconds = 3600\n")
    write_key_file(tmp_path / "door-a/keys/door-keys.json", door_keys(site, "door-a"))
    now = time.time()
    courier, courier_text = site_passes.issue(site, group="g", role="courier", label="DHL",
                                              valid_from=now - 60, valid_until=now + 3600,
                                              uses=2)
    _, revoked_text = site_passes.issue(site, group="g", role="visitor", label="Eve",
                                        valid_from=now - 60, valid_until=now + 3600, uses=5)
    site_passes.revoke(site, passes.parse(revoked_text)[0].pass_id)
    _, foreign_text = site_passes.issue(site, group="h", role="visitor", label="Hal",
                                        valid_from=now - 60, valid_until=now + 3600, uses=5)
    expired = passes.Pass("00112233aabbccdd", int(now - 7200), int(now - 3600), 1,
                          "riverside", "g", "visitor", "Old")
    expired_text = passes.sign(expired, site.keys.signing)
    later = passes.Pass("0011223344556677", int(now + 3600), int(now + 7200), 1,
                        "riverside", "g", "visitor", "Tomorrow")
    later_text = passes.sign(later, site.keys.signing)
    forged_text = passes.sign(courier, Ed25519PrivateKey.generate())
    publish(site, open_store(store))
    d = DaemonProcess(config).wait_ready()
    try:
        assert d.request({"op": "sync"})["ok"]

        def scan(text):
            return d.request({"op": "sim", "input": "qr", "text": text})

        r = scan(courier_text)
        assert r["decision"] == "granted" and r["credential"] == courier.credential_id, r
        assert "entry 1 of 2" in r["reason"]
        assert "entry 2 of 2" in scan(courier_text)["reason"]
        r = scan(courier_text)
        assert r["decision"] == "denied" and "pass used up (2 of 2 entries)" in r["reason"]
        assert scan(revoked_text)["reason"] == "denied: pass revoked"
        assert scan(foreign_text)["reason"] == ("denied: pass for door group 'h', not this "
                                                "door's ('g')")
        assert scan(forged_text)["reason"] == passes.FORGED
        assert scan(expired_text)["reason"].startswith("denied: expired")
        assert scan(later_text)["reason"].startswith("denied: not valid yet")
        r = scan("https://example.com/4006381333931")
        assert not r["ok"] and "scanned code is not a pass" in r["error"], r
        r = scan("AP1:ABCDEFGH")
        assert not r["ok"] and r["error"] == ("scanned pass unreadable: pass too short (5 "
                                              "bytes) (12 characters)"), r
        health = {h["name"]: h for h in d.request({"op": "status"})["readers"]}
        assert health["lobby-qr"]["bad_frames"] == 2 and health["lobby-qr"]["state"] == "ok"
        # a restart does not give a used-up pass new entries (counted from the log)
        d.terminate()
        d = DaemonProcess(config).wait_ready()
        assert "pass used up" in scan(courier_text)["reason"]
    finally:
        d.terminate()
    rows = open_reader(load_config(config).storage.eventlog_path).execute(
        "SELECT kind, credential, detail FROM events WHERE kind LIKE 'access.%' ORDER BY seq"
    ).fetchall()
    assert [r["kind"] for r in rows].count("access.granted") == 2
    assert {json.loads(r["detail"])["reader"] for r in rows} == {"lobby-qr"}
    assert rows[0]["credential"] == courier.credential_id
    log_text = (tmp_path / "door-a/daemon.stderr").read_text()
    assert courier_text not in log_text and courier_text[4:40] not in log_text


def test_the_scanner_line_reader_frames_repeats_and_junk(tmp_path):
    """The qr-serial reader on its own pseudo-terminal: CR, LF or CRLF ends a line; a
    code held under the scanner is one scan; binary junk and overlong lines are bad
    frames; the line after them is read."""
    import queue

    from accessd.clock import FakeClock
    from accessd.config import ReaderConfig
    from accessd.core.events import CredentialPresented, ReaderNotice
    from accessd.hw.qr_serial import QrSerialReader
    q, clock = queue.Queue(), FakeClock()
    r = QrSerialReader(ReaderConfig("lobby-qr", "qr-serial", {"port": "sim", "baudrate": 9600,
                                                              "hold_ms": 2000}), q.put, clock)
    r.start()
    try:
        assert r.opened.wait(5)
        text = passes.sign(a_pass(), Ed25519PrivateKey.generate())
        r._sim_write(text.encode() + b"\r" + text.encode() + b"\n")     # held: one scan
        ev = q.get(timeout=5)
        assert isinstance(ev, CredentialPresented) and (ev.kind, ev.value) == ("qr", text)
        clock.advance(2.5)                                               # shown again
        r._sim_write(text.lower().encode() + b"\r\n")
        assert q.get(timeout=5).value == text.lower()
        r._sim_write(b"\xff\xfe\x00junk\n")
        bad = q.get(timeout=5)
        assert isinstance(bad, ReaderNotice) and "not text (7 bytes)" in bad.detail
        clock.advance(2.5)
        r._sim_write(b"A" * 1100 + b"\n" + text.encode() + b"\n")
        bad = q.get(timeout=5)
        assert "longer than 1024 characters" in bad.detail
        assert q.get(timeout=5).value == text
        assert r.health()["bad_frames"] == 2
    finally:
        r.stop()


def test_the_office_log_names_a_pass_by_whom_it_was_for(site):
    from accessd.site import intake
    from accessd.site import passes as site_passes
    from accessd.storage.eventlog import utc_iso
    now = time.time()
    p, _ = site_passes.issue(site, group="g", role="courier", label="DHL", valid_from=now,
                             valid_until=now + 3600, uses=3)
    before = utc_iso(now - 1)    # before the revocation, even one in the same millisecond
    assert intake.holder_of(site, site.holders(), p.credential_id, before, {}) == (
        "DHL (courier's QR pass)", "")
    site_passes.revoke(site, p.pass_id)
    after = utc_iso(time.time() + 1)
    assert intake.holder_of(site, site.holders(), p.credential_id, before, {}) == (
        "DHL (courier's QR pass)", "")
    assert intake.holder_of(site, site.holders(), p.credential_id, after, {}) == (
        "revoked QR pass of DHL", "revoked")
    assert intake.holder_of(site, site.holders(), "pass-ffffffffffffffff", after, {}) == ("", "")
