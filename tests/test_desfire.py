"""MIFARE DESFire EV2/EV3 end to end: the site application created and keyed at the
office on an NFC reader, checked at the door by the real nfcpy reader code over
nfcpy's udp RF link, against the emulated card of accessd.protocols.cards (the
EV2 authentication and secure messaging both sides share are pinned to NXP's
vectors in test_ev2_vectors.py)."""

import json
import sqlite3
import threading

import pytest
from click.testing import CliRunner

from accessd.cli import accessctl
from accessd.config import load_config
from accessd.core.events import CredentialPresented, ReaderNotice
from accessd.errors import CardAuthError
from accessd.hw.nfc_emulator import CardEmulator
from accessd.protocols import desfire, ntag424
from accessd.protocols.cards import DesfireCard, Ntag424Card, Recorder, ReplayCard
from accessd.site.db import SiteDB
from accessd.testing import DaemonProcess, free_udp_port

from .test_secure_cards import door_of_group_g, present, reader_at_door

UID = "04A7C3B29E5D80"
MASTER = bytes(range(16))


def personalised(uid=UID, master=MASTER):
    card = DesfireCard(bytes.fromhex(uid))
    keys = desfire.card_keys(master, card.uid)
    desfire.personalise(card.apdu, card.uid, keys)
    return card, keys


def test_the_site_application_is_created_and_keyed_and_checks_out():
    card, keys = personalised()
    app = card.apps[desfire.AID]
    assert app["keys"] == [keys.master, keys.door] and app["versions"] == [1, 1]
    assert len(card.apps) == 1
    desfire.verify(card.apdu, card.uid, keys)
    assert desfire.state(card.apdu, card.uid, keys)["state"] == "enrolled"
    # the door's part is the door key alone; the keys depend on the UID and the AID
    assert desfire.DesfireKeys.from_hex(keys.to_hex()) == desfire.DesfireKeys(keys.door)
    other = desfire.card_keys(MASTER, bytes.fromhex("04000000000001"))
    assert other.door != keys.door and other.master != keys.master


def test_copies_foreign_cards_and_replays_are_refused():
    card, keys = personalised()
    blank_copy = DesfireCard(card.uid)                   # the UID, without the application
    with pytest.raises(CardAuthError, match="select application: application not found"):
        desfire.verify(blank_copy.apdu, card.uid, keys)
    foreign, _ = personalised(master=bytes(16))          # another site's card, same UID
    with pytest.raises(CardAuthError, match="authenticate: authentication error"):
        desfire.verify(foreign.apdu, card.uid, keys)
    assert desfire.state(foreign.apdu, card.uid, keys)["state"] == "foreign"
    rec = Recorder(card)
    desfire.verify(rec.apdu, card.uid, keys)
    with pytest.raises(CardAuthError, match="RndA"):     # a fresh challenge each time
        desfire.verify(ReplayCard(rec.transcript).apdu, card.uid, keys)
    with pytest.raises(CardAuthError, match="authenticated UID is not the UID it showed"):
        desfire.verify(card.apdu, bytes.fromhex("04000000000001"), keys)
    ntag = Ntag424Card(card.uid)                         # an NTAG showing the UID
    with pytest.raises(CardAuthError):
        desfire.verify(ntag.apdu, card.uid, keys)


def test_personalising_refuses_ev1_random_uids_and_cards_already_done():
    uid = bytes.fromhex(UID)
    keys = desfire.card_keys(MASTER, uid)
    with pytest.raises(CardAuthError, match="not a MIFARE DESFire EV2 or EV3"):
        desfire.personalise(DesfireCard(uid, hw_major=0x01).apdu, uid, keys)
    with pytest.raises(CardAuthError, match="random UID"):
        desfire.personalise(DesfireCard(uid).apdu, bytes.fromhex("08A1B2C3D4E5F6"), keys)
    card, _ = personalised()
    with pytest.raises(CardAuthError, match="already holds an accessd application"):
        desfire.personalise(card.apdu, card.uid, keys)
    ev2 = DesfireCard(uid, hw_major=0x12)
    desfire.personalise(ev2.apdu, uid, keys)
    desfire.verify(ev2.apdu, uid, keys)


def test_a_damaged_card_image_is_named():
    from accessd.protocols.cards import card_from_image
    card, _ = personalised()
    img = card.image()
    assert card_from_image(json.loads(json.dumps(img))).apps == card.apps
    img["apps"][desfire.AID.hex()]["keys"][0] = "00"
    with pytest.raises(ValueError, match="card image is damaged"):
        card_from_image(img)
    with pytest.raises(ValueError, match="type must be ntag424 or desfire"):
        card_from_image({"type": "mifare-classic"})


# ---- the office ---------------------------------------------------------------------

@pytest.fixture
def site(tmp_path):
    s = SiteDB.init(tmp_path / "site", "riverside")
    s.group_add("g")
    s.door_add("door-a", "g")
    return s


def on_office_reader(card, *args):
    path = f"udp:localhost:{free_udp_port()}"
    t = threading.Thread(target=CardEmulator(path).present, args=(card.uid,),
                         kwargs={"kind": "type4", "hold": 1.0, "applet": card.apdu})
    t.start()
    r = CliRunner().invoke(accessctl.main, [*args[:2], *[a.replace("PATH", path)
                                                         for a in args[2:]]])
    t.join(15)
    return r


def test_office_enrols_a_blank_desfire_and_card_check_reads_it_back(site):
    pid = site.person_add("Anna Berg", "12A", "resident")
    card = DesfireCard(bytes.fromhex(UID))
    r = on_office_reader(card, "--site", str(site.dir), "enroll", "--person", pid,
                         "--kind", "desfire", "--nfc-reader", "PATH", "--capture-timeout", "10")
    assert r.exit_code == 0, r.output
    assert "enrolled desfire card" in r.output and "assurance high" in r.output
    assert desfire.AID in card.apps
    row = site.credentials()[0]
    assert row["kind"] == "nfc" and row["assurance"] == "high"
    keys = desfire.card_keys(site.card_master(), card.uid)
    desfire.verify(card.apdu, card.uid, keys)
    assert keys.door not in (site.dir / "site.db").read_bytes()
    r = on_office_reader(card, "--site", str(site.dir), "card", "check", "--nfc-reader", "PATH",
                         "--timeout", "10", "--json")
    doc = json.loads(r.output[r.output.index("{"):])
    assert doc["card"] == "desfire" and doc["state"] == "enrolled"
    assert doc["enrolled_to"] == "Anna Berg (12A)" and UID not in r.output
    # the same card again, for someone else: refused before it is touched
    bo = site.person_add("Bo Lund", "12B", "resident")
    r = on_office_reader(card, "--site", str(site.dir), "enroll", "--person", bo,
                         "--kind", "desfire", "--nfc-reader", "PATH", "--capture-timeout", "10")
    assert r.exit_code == 1 and "already enrolled" in r.output, r.output


def test_office_names_the_wrong_kind_and_an_ev1(site):
    pid = site.person_add("Anna Berg", "12A", "resident")
    r = on_office_reader(DesfireCard(bytes.fromhex(UID)), "--site", str(site.dir), "enroll",
                         "--person", pid, "--kind", "ntag424", "--nfc-reader", "PATH",
                         "--capture-timeout", "10")
    assert r.exit_code == 1 and "enrol it with --kind desfire" in r.output, r.output
    r = on_office_reader(Ntag424Card(bytes.fromhex(UID)), "--site", str(site.dir), "enroll",
                         "--person", pid, "--kind", "desfire", "--nfc-reader", "PATH",
                         "--capture-timeout", "10")
    assert r.exit_code == 1 and "enrol it with --kind ntag424" in r.output, r.output
    r = on_office_reader(DesfireCard(bytes.fromhex(UID), hw_major=0x01), "--site",
                         str(site.dir), "enroll", "--person", pid, "--kind", "desfire",
                         "--nfc-reader", "PATH", "--capture-timeout", "10")
    assert r.exit_code == 1 and "not a MIFARE DESFire EV2 or EV3" in r.output, r.output
    assert site.credentials() == []


# ---- at the door ----------------------------------------------------------------------

def door_with_desfire(tmp_path, site, policy=""):
    anna = site.person_add("Anna Berg", "12A", "resident")
    site.grant(anna, "g")
    card = DesfireCard(bytes.fromhex(UID))
    keys = desfire.card_keys(site.card_master(), card.uid)
    desfire.personalise(card.apdu, card.uid, keys)
    site.credential_add(anna, "nfc", UID, card=("desfire", keys.to_hex()))
    return door_of_group_g(tmp_path, site, policy), card


def test_a_door_requiring_high_assurance_opens_for_the_card_not_a_copy(tmp_path, site):
    config, card = door_with_desfire(tmp_path, site, 'high_assurance = "always"')
    d = DaemonProcess(config).wait_ready()
    try:
        def tap(c):
            return d.request({"op": "sim", "input": "tap", "card": c.image()})
        r = tap(card)
        assert r["decision"] == "granted", r
        r = tap(DesfireCard(card.uid))                   # a blank DESFire with the UID
        assert r["decision"] == "denied" and "application not found" in r["reason"], r
        r = d.request({"op": "sim", "input": "tap", "uid": UID})     # the UID on a tag
        assert r["decision"] == "denied" and "Type2Tag" in r["reason"], r
        assert tap(card)["decision"] == "granted"
    finally:
        d.terminate()
    conn = sqlite3.connect(load_config(config).storage.eventlog_path)
    rows = conn.execute("SELECT kind, detail FROM events WHERE kind LIKE 'access.%' "
                        "ORDER BY seq").fetchall()
    conn.close()
    assert [(k, json.loads(d)["assurance"]) for k, d in rows] == [
        ("access.granted", "high"), ("access.denied", "low"), ("access.denied", "low"),
        ("access.granted", "high")]


def test_a_card_pulled_or_too_slow_mid_authentication_is_a_bad_frame(tmp_path, site):
    config, card = door_with_desfire(tmp_path, site)
    with reader_at_door(tmp_path, config) as (r, q, emulator, secure):
        ev = present(r, emulator, card.uid, card.apdu, q)
        assert isinstance(ev, CredentialPresented) and ev.assurance == "high"
        card.pull_after, card.commands = 2, 0            # gone after the challenge
        ev = present(r, emulator, card.uid, card.apdu, q)
        assert isinstance(ev, ReaderNotice) and ev.kind == "reader.bad_frame", ev
        assert "cut short" in ev.detail and q.empty()
        card.pull_after = None
        assert present(r, emulator, card.uid, card.apdu, q).assurance == "high"
        # a card that answers every challenge too late (past its frame waiting time):
        # bad frames only (nfcpy may find it again while it is held), never a decision
        def slow(apdu):
            if apdu[1] == 0x71:
                threading.Event().wait(0.3)     # the simulated card's own slowness
            return card.apdu(apdu)
        ev = present(r, emulator, card.uid, slow, q)
        assert isinstance(ev, ReaderNotice) and ev.kind == "reader.bad_frame", ev
        assert "cut short" in ev.detail and "timeout" in ev.detail
        while not q.empty():
            later = q.get_nowait()
            assert isinstance(later, ReaderNotice) and later.kind == "reader.bad_frame", later
        assert present(r, emulator, card.uid, card.apdu, q).assurance == "high"
        assert secure.advance(UID, 1) is None            # DESFire left no counter row


def test_ntag424_and_desfire_keys_do_not_overlap():
    uid = bytes.fromhex(UID)
    n, f = ntag424.card_keys(MASTER, uid), desfire.card_keys(MASTER, uid)
    assert len({n.master, n.door, n.meta, f.master, f.door}) == 5
