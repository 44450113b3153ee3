"""One credential, many readers, at the office and at a real door: the office
refuses what no reader could match or tell apart, the bundle carries a fob's
narrower forms, and a real daemon's RDM6300 (pty) and Wiegand (gpiozero mock pins)
readers match the same fob. Published examples as in test_fob_forms.py."""

import json
import subprocess
import sys

import pytest

from accessd.core.credentials import normalize
from accessd.site import csvimport
from accessd.site.db import SiteDB
from accessd.site.publish import door_keys, publish
from accessd.storage.crypto import fingerprint
from accessd.storage.keys import write_key_file
from accessd.sync.store import open_store
from accessd.errors import StoreError
from accessd.testing import DaemonProcess, write_sim_config


@pytest.fixture
def site(tmp_path):
    s = SiteDB.init(tmp_path / "site", "riverside")
    s.group_add("bldg-a")
    s.door_add("door-a", "bldg-a", readers=["rdm6300", "wiegand-26", "nfc", "keypad"])
    s.people_ = {n: s.person_add(n, u, "resident") for n, u in
                 [("Anna Berg", "12A"), ("Bo Lund", "14C"), ("Cy Dahl", "3B"), ("Di Ek", "7F")]}
    for pid in s.people_.values():
        s.grant(pid, "bldg-a")
    yield s
    s.close()


def fob(site, person, value):
    return site.credential_add(site.people_[person], "fob", normalize("fob", value))


def test_door_readers_are_kept_listed_and_checked(site):
    assert site.door("door-a")["readers"] == ["keypad", "nfc", "rdm6300", "wiegand-26"]
    site.door_readers_set("door-a", ["wiegand-raw-40", " wiegand-34 "])
    assert site.doors()[0]["readers"] == ["wiegand-34", "wiegand-raw-40"]
    for bad in (["hid-prox"], ["wiegand-raw-65"], ["wiegand-raw-x"]):
        with pytest.raises(StoreError, match="unknown reader"):
            site.door_readers_set("door-a", bad)
    assert site.doors()[0]["readers"] == ["wiegand-34", "wiegand-raw-40"]  # unchanged
    site.door_add("door-b", "bldg-a")
    assert site.site_readers() is None  # door-b did not say: any reader


def test_enrolment_refuses_what_no_reader_here_can_match(site):
    site.door_readers_set("door-a", ["nfc", "keypad"])
    with pytest.raises(StoreError, match=r"refused: this is a 32-bit fob number, which no "
                                         r"reader on this site gives \(readers: keypad, nfc\)"):
        fob(site, "Anna Berg", "0045131261")
    site.door_readers_set("door-a", ["rdm6300"])
    with pytest.raises(StoreError, match="raw 40-bit Wiegand frame"):
        fob(site, "Anna Berg", "raw40:0A00C0FFEE")
    fob(site, "Anna Berg", "176:42493")  # an RDM6300 matches it by its low 24 bits
    assert len(site.credentials()) == 1


def test_a_fob_a_reader_here_cannot_tell_apart_is_refused_the_same_fob_twice_too(site):
    a = fob(site, "Anna Berg", "0004340098557")
    # the same fob by another printed form: already Anna's
    for same in ("0045131261", "176,42493", "0x0102B0A5FD"):
        with pytest.raises(StoreError, match=r"already enrolled to Anna Berg \(12A\)"):
            fob(site, "Bo Lund", same)
    # a fob differing only in the version byte: a Wiegand-26 reader reads both the same
    with pytest.raises(StoreError, match=r"a reader giving em24 would read this fob the same "
                                         r"as Anna Berg \(12A\)'s fob"):
        fob(site, "Bo Lund", "0202B0A5FD")
    # with no Wiegand-26 reader on the site, the RDM6300 tells them apart
    site.door_readers_set("door-a", ["rdm6300"])
    b = fob(site, "Bo Lund", "0202B0A5FD")
    assert a["fingerprint"] != b["fingerprint"]


def test_csv_import_reports_each_fob_problem_with_its_line(site):
    site.door_readers_set("door-a", ["rdm6300", "wiegand-26"])
    text = ("name,unit,role,phone,kind,uid,groups,valid_from,valid_until\n"
            "Eva Ny,1A,resident,,fob,0004340098557,bldg-a,,\n"
            "Finn Ny,1B,resident,,fob,176:42493,bldg-a,,\n"
            "Gro Ny,1C,resident,,fob,raw40:0A00C0FFEE,bldg-a,,\n"
            "Hal Ny,1D,resident,,fob,256:1,bldg-a,,\n"
            "Ida Ny,1E,resident,,fob,0004329479323,bldg-a,,\n"
            "Jo Ny,1F,resident,,fob,0202B0A5FD,bldg-a,,\n")
    rep = csvimport.import_csv(site, text)
    assert not rep.imported
    errors = dict(rep.errors)
    assert errors[3] == "the same fob is on line 2 too"   # its facility:card
    assert "raw 40-bit Wiegand frame" in errors[4]
    assert "facility 256 is above 255" in errors[5]
    assert "a reader on this site could not tell this fob from the one on line 2" in errors[7]
    assert set(errors) == {3, 4, 5, 7}
    assert site.credentials() == []  # nothing imported


def test_publish_carries_narrower_forms_and_warns_about_shared_ones(site, tmp_path):
    site.door_readers_set("door-a", ["rdm6300"])
    fob(site, "Anna Berg", "0102B0A5FD")
    fob(site, "Bo Lund", "0202B0A5FD")   # same em32/em24 forms as Anna's
    fob(site, "Cy Dahl", "4340757")      # Suprema's 32-bit number
    rows, ambiguous = site.group_whitelist("bldg-a")
    assert len(rows) == 3                 # an RDM6300 only needs each fob's own form
    site.door_add("gate", "bldg-a", readers=["wiegand-26"])
    rows, ambiguous = site.group_whitelist("bldg-a")
    # Anna's and Bo's em24 forms are shared: neither opens by it; Cy's is his own
    assert len(rows) == 4 and [a.split(":")[0] for a in ambiguous] == ["em24"]
    res = publish(site, open_store(f"file://{tmp_path}/store"))
    assert res[0]["credentials"] == 3 and res[0]["ambiguous"] == ambiguous


@pytest.fixture
def door(site, tmp_path):
    """A real daemon of the site, with an RDM6300 reader on a pty and a Wiegand gate."""
    config = write_sim_config(tmp_path / "door-a", keys=False, real_readers=True,
                              door_id="door-a")
    config.write_text(config.read_text() + f'\n[sync]\nurl = "file://{tmp_path}/store"\n'
                      "interval_seconds = 3600\n")
    write_key_file(tmp_path / "door-a/keys/door-keys.json", door_keys(site, "door-a"))

    def start():
        publish(site, open_store(f"file://{tmp_path}/store"))
        d = DaemonProcess(config).wait_ready()
        assert d.request({"op": "sync"})["ok"]
        return d
    return start


def test_one_fob_at_an_rdm6300_and_a_wiegand_26_reader(site, door):
    anna = fob(site, "Anna Berg", "0004340098557")   # i-keys: the full ID in 13 digits
    cy = fob(site, "Cy Dahl", "014, 40091")            # Roger EMC-1: facility, card
    di = fob(site, "Di Ek", "4340757")                 # Suprema: the 32-bit number
    d = door()
    try:
        def present(number, reader):
            r = d.request({"op": "sim", "input": "fob", "number": number, "reader": reader})
            return r["decision"], r["credential"]

        for reader in ("front-fob", "gate"):
            assert present("0102B0A5FD", reader) == ("granted", anna["id"])
            assert present("0004329479323", reader) == ("granted", cy["id"])
            assert present("322126887957", reader) == ("granted", di["id"])
        # Anna's fob with another version byte: an RDM6300 tells it apart ...
        decision, who = present("0202B0A5FD", "front-fob")
        assert decision == "denied" and who.startswith("fp:")
        # ... a Wiegand-26 reader cannot (the same 24 bits reach the door)
        assert present("0202B0A5FD", "gate") == ("granted", anna["id"])
        # Di's number with any version byte opens at the RDM6300 (enrolled by 32 bits)
        assert present("0x9900423C15", "front-fob") == ("granted", di["id"])
        st = d.request({"op": "status"})
        assert st["whitelist"]["credentials"] == 3  # credentials, not rows
    finally:
        d.terminate()


def test_a_fob_enrolled_before_canonical_forms_still_opens(site, door):
    """Sites enrolled fobs as a plain decimal of what the reader gave; the door also
    looks a reading up in that form."""
    digest = site.digest("fob", "12648430")
    with site.db.atomic():
        site.db.insert("credentials", {
            "id": "cold0000001", "person_id": site.people_["Bo Lund"], "kind": "fob",
            "lookup": digest, "fingerprint": fingerprint(digest), "assurance": "low",
            "valid_from": None, "valid_until": None, "status": "active", "created": 0.0,
            "duress": 0, "max_uses": None})
    d = door()
    try:
        r = d.request({"op": "sim", "input": "fob", "number": "0A00C0FFEE"})
        assert (r["decision"], r["credential"]) == ("granted", "cold0000001")
    finally:
        d.terminate()
    # the office knows the old enrolment when the same fob is enrolled again
    with pytest.raises(StoreError, match=r"already enrolled to Bo Lund \(14C\) "
                                         r"\(cold0000001, enrolled before fob forms"):
        fob(site, "Anna Berg", "12648430")


def test_door_readers_cli(tmp_path):
    def ctl(*args):
        return subprocess.run([sys.executable, "-m", "accessd.cli.accessctl", "--site",
                               str(tmp_path / "s"), *args], capture_output=True, text=True,
                              timeout=60)
    assert ctl("site", "init", "riverside").returncode == 0
    assert ctl("group", "add", "g").returncode == 0
    r = ctl("door", "add", "gate", "--group", "g", "--readers", "wiegand-26,keypad")
    assert r.returncode == 0, r.stderr
    r = ctl("door", "add", "x", "--group", "g", "--readers", "hid-iclass")
    assert r.returncode == 1 and "accessctl: unknown reader 'hid-iclass'" in r.stderr
    assert [d["id"] for d in json.loads(ctl("door", "list", "--json").stdout)] == ["gate"]
    r = ctl("person", "add", "--name", "Anna Berg", "--unit", "12A", "--json")
    pid = json.loads(r.stdout)["person"]
    r = ctl("enroll", "--person", pid, "--kind", "fob", "--uid", "0102B0A5FD")
    assert r.returncode == 0, r.stderr
    r = ctl("enroll", "--person", pid, "--kind", "fob", "--uid", "raw26:1")
    assert r.returncode == 1 and "no reader on this site gives" in r.stderr
    r = ctl("door", "readers", "gate", "any")
    assert r.returncode == 0 and r.stdout.strip() == "door gate: readers any"
    assert "wiegand-raw-<bits>" in ctl("door", "add", "--help").stdout
