"""Secure cards (NTAG 424 DNA) end to end: personalised at the office on an NFC reader,
checked at the door by the real nfcpy reader code over nfcpy's udp RF link, against
the emulated card of accessd.protocols.cards (which answers as the data sheet says;
the crypto both sides share is pinned to NXP's vectors in test_ev2_vectors.py)."""

import contextlib
import json
import queue
import sqlite3
import threading

import pytest
from click.testing import CliRunner

from accessd.cli import accessctl
from accessd.clock import SystemClock
from accessd.config import ReaderConfig, load_config
from accessd.core.events import CredentialPresented, ReaderNotice
from accessd.errors import CardAuthError
from accessd.hw.nfc import NfcReader
from accessd.hw.nfc_emulator import CardEmulator
from accessd.protocols import ntag424
from accessd.protocols.cards import Ntag424Card, Recorder, ReplayCard
from accessd.site.db import SiteDB
from accessd.site.publish import door_keys
from accessd.storage.keys import load_key_file, write_key_file
from accessd.storage.secure_cards import SecureCards
from accessd.storage.whitelist import Whitelist
from accessd.storage.whitelist_admin import build_whitelist_file
from accessd.testing import DaemonProcess, free_udp_port, write_sim_config

UID = "04DE5F1EACC040"


def office_enrol(site, pid, card, *extra):
    """`accessctl enroll --kind ntag424` with the card held on the office's reader."""
    path = f"udp:localhost:{free_udp_port()}"
    t = threading.Thread(target=CardEmulator(path).present, args=(card.uid,),
                         kwargs={"kind": "type4", "hold": 1.0, "applet": card.apdu})
    t.start()
    r = CliRunner().invoke(accessctl.main, ["--site", str(site.dir), "enroll", "--person", pid,
                                            "--kind", "ntag424", "--nfc-reader", path,
                                            "--capture-timeout", "10", *extra])
    t.join(15)
    return r


@pytest.fixture
def site(tmp_path):
    s = SiteDB.init(tmp_path / "site", "riverside")
    s.group_add("g")
    s.door_add("door-a", "g")
    return s


def test_office_personalises_a_blank_card_and_enrols_it_high(site):
    pid = site.person_add("Anna Berg", "12A", "resident")
    card = Ntag424Card(bytes.fromhex(UID))
    r = office_enrol(site, pid, card)
    assert r.exit_code == 0, r.output
    assert "assurance high" in r.output and "personalised" in r.output
    assert UID not in r.output
    keys = ntag424.card_keys(site.card_master(), card.uid)
    assert card.keys[0] == keys.master and card.keys[1] == keys.door   # its own keys now
    assert card.sdm is not None                                         # SUN on
    [cred] = site.credentials(pid)
    assert cred["assurance"] == "high"
    # the door keys are sealed in the site database, never in clear
    raw = (site.dir / "site.db").read_bytes()
    assert keys.door not in raw and keys.door.hex().encode() not in raw
    assert site.door_row(cred["id"])["card_keys"] == keys.to_hex()

    # the same card again: already enrolled, and left as it is
    r = office_enrol(site, site.person_add("Bo Berg", "12A", "resident"), card)
    assert r.exit_code == 1 and "already enrolled to Anna Berg" in r.output, r.output


def test_office_refuses_another_sites_card_and_a_plain_card(site, tmp_path):
    pid = site.person_add("Anna Berg", "12A", "resident")
    foreign = Ntag424Card(bytes.fromhex(UID))
    ntag424.personalise(foreign.apdu, foreign.uid, ntag424.card_keys(bytes(16), foreign.uid))
    r = office_enrol(site, pid, foreign)
    assert r.exit_code == 1 and "another site's card" in r.output, r.output
    assert site.credentials(pid) == []
    # a type 2 card (a bare UID) is not a secure card
    path = f"udp:localhost:{free_udp_port()}"
    t = threading.Thread(target=CardEmulator(path).present, args=(bytes.fromhex(UID),),
                         kwargs={"hold": 2.0})
    t.start()
    r = CliRunner().invoke(accessctl.main, ["--site", str(site.dir), "enroll", "--person", pid,
                                            "--kind", "ntag424", "--nfc-reader", path,
                                            "--capture-timeout", "10"])
    t.join(15)
    assert r.exit_code == 1 and "not an NTAG 424 DNA" in r.output, r.output
    # usage: a secure card takes its UID from the card
    r = CliRunner().invoke(accessctl.main, ["--site", str(site.dir), "enroll", "--person", pid,
                                            "--kind", "ntag424", "--uid", UID])
    assert r.exit_code == 2 and "--nfc-reader" in r.output
    r = CliRunner().invoke(accessctl.main, ["--site", str(site.dir), "enroll", "--person", pid,
                                            "--kind", "ntag424", "--nfc-reader",
                                            "tty:AMA0:pn532"])
    assert r.exit_code == 1 and "NFC reader" in r.output


def test_card_check_reads_a_cards_state_back(site):
    pid = site.person_add("Anna Berg", "12A", "resident")
    card = Ntag424Card(bytes.fromhex(UID))

    def check(c):
        path = f"udp:localhost:{free_udp_port()}"
        t = threading.Thread(target=CardEmulator(path).present, args=(c.uid,),
                             kwargs={"kind": "type4", "hold": 1.0, "applet": c.apdu})
        t.start()
        r = CliRunner().invoke(accessctl.main, ["--site", str(site.dir), "card", "check",
                                                "--nfc-reader", path, "--timeout", "10",
                                                "--json"])
        t.join(15)
        assert r.exit_code == 0, r.output
        return json.loads(r.output[r.output.index("{"):])

    assert check(card)["state"] == "blank"
    assert office_enrol(site, pid, card).exit_code == 0
    doc = check(card)
    assert doc["state"] == "enrolled" and doc["enrolled_to"] == "Anna Berg (12A)"
    assert doc["counter"] == card.counter and UID not in json.dumps(doc)
    other = Ntag424Card(bytes.fromhex("04AABBCCDDEEFF"))
    ntag424.personalise(other.apdu, other.uid, ntag424.card_keys(bytes(16), other.uid))
    assert check(other)["state"] == "foreign"


# ---- at the door: the real daemon, its nfcpy reader on the udp link ------------------

def door_with_card(tmp_path, site, policy=""):
    """A door of group g whose whitelist holds Anna's secure card and Bo's fob."""
    anna = site.person_add("Anna Berg", "12A", "resident")
    bo = site.person_add("Bo Berg", "12B", "resident")
    for p in (anna, bo):
        site.grant(p, "g")
    card = Ntag424Card(bytes.fromhex(UID))   # personalised as the office does it
    keys = ntag424.card_keys(site.card_master(), card.uid)
    ntag424.personalise(card.apdu, card.uid, keys)
    site.credential_add(anna, "nfc", UID, card=("ntag424", keys.to_hex()))
    site.credential_add(bo, "fob", "0102B0A5FD")
    return door_of_group_g(tmp_path, site, policy), card


def door_of_group_g(tmp_path, site, policy=""):
    """Door door-a of the site's group g, its whitelist built from the site as it is."""
    config = write_sim_config(tmp_path / "door-a", keys=False, door_id="door-a",
                              real_readers=True)
    if policy:
        config.write_text(config.read_text().replace(
            'unsynced_clock = "trust"', f'unsynced_clock = "trust"\n{policy}'))
    dk = door_keys(site, "door-a")
    write_key_file(tmp_path / "door-a/keys/door-keys.json", dk)
    cfg = load_config(config)
    cfg.storage.data_dir.mkdir(parents=True, exist_ok=True)
    rows, _ = site.group_whitelist("g")
    build_whitelist_file(cfg.storage.whitelist_path, rows, lookup_key=dk.lookup,
                         seal_key=dk.seal, meta={"version": "1"})
    return config


def tap(d, card, **kw):
    r = d.request({"op": "sim", "input": "tap", "card": card.image(), **kw})
    assert r.get("card") is not None, r
    new = Ntag424Card.from_image(r.pop("card"))
    card.counter, card.keys = new.counter, new.keys
    return r


def test_a_cloned_uid_is_denied_and_the_genuine_card_opens(tmp_path, site):
    config, card = door_with_card(tmp_path, site)
    d = DaemonProcess(config).wait_ready()
    try:
        r = tap(d, card)
        assert r["decision"] == "granted", r
        # a blank card with the same UID: no keys, no SUN
        clone = Ntag424Card(card.uid)
        r = tap(d, clone)
        assert r["decision"] == "denied" and "failed its key check" in r["reason"], r
        # the UID alone on a type 2 card (what a cheap cloner writes)
        r = d.request({"op": "sim", "input": "tap", "uid": UID})
        assert r["decision"] == "denied" and "Type2Tag" in r["reason"], r
        # a full copy of the card's chip from before its last tap: counter rolled back
        backup = Ntag424Card.from_image(card.image())
        assert tap(d, card)["decision"] == "granted"
        r = tap(d, backup)
        assert r["decision"] == "denied" and "not above the last seen" in r["reason"], r
        assert tap(d, card)["decision"] == "granted"
        st = d.request({"op": "status"})
    finally:
        d.terminate()
    assert st["relay"] in ("locked", "unlocked")
    cfg = load_config(config)
    conn = sqlite3.connect(cfg.storage.eventlog_path)
    rows = conn.execute("SELECT kind, reason, detail FROM events WHERE kind LIKE 'access.%' "
                        "ORDER BY seq").fetchall()
    conn.close()
    assurance = [(k, json.loads(det).get("assurance")) for k, _, det in rows]
    assert assurance == [("access.granted", "high"), ("access.denied", "low"),
                         ("access.denied", "low"), ("access.granted", "high"),
                         ("access.denied", "low"), ("access.granted", "high")]
    # the counter table is sealed: neither the UID nor a counter in clear
    raw = (cfg.storage.data_dir / "card-counters.db").read_bytes()
    assert bytes.fromhex(UID) not in raw and UID.encode() not in raw


def test_a_door_requiring_high_assurance_takes_the_card_not_the_fob(tmp_path, site):
    config, card = door_with_card(tmp_path, site, 'high_assurance = "always"')
    d = DaemonProcess(config).wait_ready()
    try:
        r = d.request({"op": "sim", "input": "fob", "number": "0102B0A5FD"})
        assert r["decision"] == "denied" and "high-assurance credential required" in r["reason"]
        assert tap(d, card)["decision"] == "granted"
        st = d.request({"op": "status"})
    finally:
        d.terminate()
    assert st["assurance"]["required"] == "always"
    assert "NTAG 424 DNA" in st["assurance"]["high"][0]


# ---- the reader alone: faults a tap can bring ----------------------------------------

def door_secure_cards(tmp_path, config):
    """The door's whitelist as its core opens it, and the readers' SecureCards on it."""
    cfg = load_config(config)
    keys = load_key_file(cfg.storage.key_file)
    whitelist = Whitelist(cfg.storage.whitelist_path, keys)
    return whitelist, SecureCards(whitelist, tmp_path / "counters.db", keys)


@contextlib.contextmanager
def reader_at_door(tmp_path, config):
    """The door's NFC reader on its own udp link, checking secure cards:
    (reader, its event queue, a card emulator on the link, its SecureCards)."""
    whitelist, secure = door_secure_cards(tmp_path, config)
    path = f"udp:localhost:{free_udp_port()}"
    q = queue.Queue()
    r = NfcReader(ReaderConfig("front-nfc", "nfc", {"path": path, "targets": ["106A"],
                                                    "retry_max_seconds": 0.2}),
                  q.put, SystemClock(), retry_initial=0.05, secure=secure)
    r.start()
    try:
        yield r, q, CardEmulator(path), secure
    finally:
        r.stop(5)
        secure.close()
        whitelist.close()


@pytest.fixture
def secure_reader(tmp_path, site):
    config, card = door_with_card(tmp_path, site)
    with reader_at_door(tmp_path, config) as (r, q, emulator, secure):
        yield r, q, emulator, card, secure


def present(reader, emulator, uid, applet, q, hold=1.0):
    assert reader.opened.wait(5) and reader.field_clear.wait(5)
    emulator.present(uid, kind="type4", hold=hold, applet=applet)
    return q.get(timeout=8)


def test_a_replayed_session_and_a_card_pulled_mid_check(secure_reader):
    reader, q, emulator, card, secure = secure_reader
    rec = Recorder(card)
    ev = present(reader, emulator, card.uid, rec.apdu, q)
    assert isinstance(ev, CredentialPresented) and ev.assurance == "high"
    # an attacker's recording of that session, played back: the challenge is new
    ev = present(reader, emulator, card.uid, ReplayCard(rec.transcript).apdu, q)
    assert ev.assurance == "low" and ("RndA" in ev.refusal or "not above" in ev.refusal)
    # pulled away after the NDEF read, mid-authentication: a bad frame, no credential
    card.pull_after, card.commands = 4, 0
    ev = present(reader, emulator, card.uid, card.apdu, q)
    assert isinstance(ev, ReaderNotice) and ev.kind == "reader.bad_frame", ev
    assert "cut short" in ev.detail
    assert q.empty()
    card.pull_after = None
    ev = present(reader, emulator, card.uid, card.apdu, q)
    assert ev.assurance == "high"                 # the next tap works
    # garbage answers: a bad frame too, never a decision on the UID alone
    ev = present(reader, emulator, card.uid, lambda apdu: b"\x01", q)
    assert isinstance(ev, ReaderNotice) and ev.kind == "reader.bad_frame"
    assert q.empty()


def test_counters_survive_a_reopen_and_refuse_going_back(tmp_path, site):
    config, _ = door_with_card(tmp_path, site)
    whitelist, secure = door_secure_cards(tmp_path, config)
    assert secure.advance(UID, 5) is None
    assert secure.advance(UID, 5) == 5
    secure.close()
    again = SecureCards(whitelist, secure.counters_path,
                        load_key_file(load_config(config).storage.key_file))
    assert again.advance(UID, 4) == 5 and again.advance(UID, 6) is None
    assert again.lookup(UID).card == "ntag424"
    assert again.lookup("04000000") is None
    # the core swaps in a whitelist without the card: the readers follow at once
    dk = door_keys(site, "door-a")
    new = tmp_path / "new-whitelist.db"
    build_whitelist_file(new, [], lookup_key=dk.lookup, seal_key=dk.seal,
                         meta={"version": "2"})
    whitelist.replace_with(new)
    assert again.lookup(UID) is None
    again.close()
    whitelist.close()


def test_sun_and_uid_must_agree():
    """A relay or an emulator showing one UID and holding another card's keys."""
    master = bytes(range(16))
    a, b = bytes.fromhex(UID), bytes.fromhex("04AABBCCDDEEFF")
    card = Ntag424Card(b)
    ntag424.personalise(card.apdu, b, ntag424.card_keys(master, b))
    with pytest.raises(CardAuthError):
        ntag424.verify(card.apdu, a, ntag424.card_keys(master, b))


def test_explain_shows_assurance_and_a_door_requiring_it(tmp_path, site):
    door_with_card(tmp_path, site)
    creds = {c["kind"]: c["id"] for c in site.credentials()}

    def explain(cid, *extra):
        r = CliRunner().invoke(accessctl.main, ["--site", str(site.dir), "explain", cid,
                                                "--door", "door-a", *extra])
        assert r.exit_code == 0, r.output
        return r.output

    card = explain(creds["nfc"], "--high-assurance")
    assert card.startswith("OPENS") and "ntag424 card" in card and "assurance high" in card
    fob = explain(creds["fob"], "--high-assurance")
    assert fob.startswith("DOES NOT OPEN: denied: high-assurance credential required")
    assert explain(creds["fob"]).startswith("OPENS")


def test_the_pipeline_denies_an_unproven_secure_card_and_low_where_high_is_required():
    from accessd.core import access, guards
    from accessd.core.credentials import CredentialRecord
    card = CredentialRecord("c1", "nfc", "p1", "high", "active", None, None, card="ntag424",
                            card_keys="00" * 32)
    fob = CredentialRecord("c2", "fob", "p2", "low", "active", None, None)
    cfg = access.Settings(guards.LockoutSettings(5, 300, 60, 900),
                          guards.StrangerSettings(5, 120))
    at = access.Situation("normal", 1.8e9)

    def go(rec, assurance="low", refusal="", high="never"):
        s = cfg if high == "never" else access.Settings(cfg.lockout, cfg.stranger,
                                                        high_assurance=high)
        o = access.present(access.AccessState(), access.Presented("r", rec.kind, "fp:x",
                                                                  assurance, refusal),
                           rec, at, s, 0.0)
        return o.decision, o.reason, o.records[0].detail["assurance"]

    assert go(card, "high") == ("granted", "granted", "high")
    assert go(card, "low", "no SUN") == ("denied", "denied: secure card failed its key check "
                                                   "(no SUN)", "low")
    assert go(fob) == ("granted", "granted", "low")
    assert go(fob, high="always")[:2] == ("denied", "denied: high-assurance credential "
                                                    "required (a fob is low assurance)")
    assert go(card, "high", high="always")[0] == "granted"
    # a fob cannot claim high assurance: only a secure card's record can give it
    assert go(fob, "high", high="always")[0] == "denied"
    assert "card_keys" not in repr(card) and "00" * 32 not in repr(card)


def test_bad_policy_value_and_a_damaged_card_image_are_named(tmp_path):
    from accessd.config import load_config as load
    from accessd.errors import ConfigError
    config = write_sim_config(tmp_path / "door")
    config.write_text(config.read_text().replace(
        'unsynced_clock = "trust"', 'unsynced_clock = "trust"\nhigh_assurance = "At Night!"'))
    with pytest.raises(ConfigError, match="policy.high_assurance"):
        load(config)
    image = Ntag424Card(bytes.fromhex(UID)).image()
    for damage, words in (({"keys": ["00"] * 5}, "five 16-byte keys"),
                          ({"counter": None}, "card image is damaged"),
                          ({"type": "mifare"}, "type must be ntag424")):
        with pytest.raises(ValueError, match=words):
            Ntag424Card.from_image({**image, **damage})
    bad = tmp_path / "bad.card"
    bad.write_text("{not json")
    r = CliRunner().invoke(accessctl.main, ["--config", str(config), "sim", "tap", "--card",
                                            str(bad)])
    assert r.exit_code == 1 and "bad.card" in r.output, r.output
    r = CliRunner().invoke(accessctl.main, ["sim", "card", "new", str(tmp_path / "c.card"),
                                            "--uid", "04ZZ"])
    assert r.exit_code == 1 and "hexadecimal" in r.output, r.output
    r = CliRunner().invoke(accessctl.main, ["sim", "card", "new", str(tmp_path / "c.card")])
    assert r.exit_code == 0 and json.loads((tmp_path / "c.card").read_text())["counter"] == 0
    r = CliRunner().invoke(accessctl.main, ["sim", "card", "new", str(tmp_path / "c.card")])
    assert r.exit_code == 1 and "not overwriting" in r.output
