"""The encrypted whitelist: lookups, the write path, and what the file reveals."""

import sqlite3

import pytest

from accessd.errors import NotFoundError, StoreError
from accessd.storage.crypto import lookup_digest
from accessd.storage.keys import generate
from accessd.storage.whitelist import Whitelist
from accessd.storage.whitelist_admin import WhitelistAdmin

UID = "04A1B2C3D4E5F6"
PIN = "739146"
UNTIL = 1_893_456_000.0  # 2030-01-01


@pytest.fixture
def store(tmp_path):
    keys = generate()
    path = tmp_path / "data" / "whitelist.db"
    admin = WhitelistAdmin(path, keys)
    yield path, keys, admin
    admin.close()


def test_enrolled_credentials_are_found_by_value(store):
    path, keys, admin = store
    nfc = admin.enroll("nfc", UID, "12A-1", valid_until=UNTIL)
    pin = admin.enroll("pin", PIN, "12A-1")
    wl = Whitelist(path, keys)
    assert wl.lookup(wl.digest("nfc", UID)) == nfc
    assert wl.lookup(wl.digest("pin", PIN)) == pin
    assert wl.lookup(wl.digest("pin", UID)) is None       # the kind is part of the key
    assert wl.lookup(wl.digest("nfc", "04A1B2C3")) is None
    assert wl.count() == 2


def test_file_reveals_no_value_and_no_validity_window(store, tmp_path):
    path, keys, admin = store
    admin.enroll("nfc", UID, "holder-7", valid_from=UNTIL - 86400, valid_until=UNTIL)
    admin.enroll("pin", PIN, "holder-7")
    admin.close()
    import struct
    needles = [UID.encode(), UID.lower().encode(), bytes.fromhex(UID), PIN.encode(),
               b"holder-7", str(int(UNTIL)).encode(), str(UNTIL).encode(),
               struct.pack(">d", UNTIL), struct.pack("<d", UNTIL), b"valid", b"active"]
    blobs = b"".join(p.read_bytes() for p in path.parent.iterdir())
    for n in needles:
        assert n not in blobs, n


def test_wrong_key_file_is_refused(store):
    path, keys, admin = store
    admin.enroll("nfc", UID, "x")
    with pytest.raises(StoreError, match="another key file"):
        Whitelist(path, generate())
    with pytest.raises(StoreError, match="another key file"):
        WhitelistAdmin(path, generate())


def test_tampered_row_fails_authentication(store):
    path, keys, admin = store
    admin.enroll("nfc", UID, "x")
    admin.enroll("nfc", "04000000", "y")
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT lookup, sealed FROM credentials").fetchall()
    # swap the sealed rows of the two credentials: each is bound to its own digest
    with conn:
        conn.execute("UPDATE credentials SET sealed=? WHERE lookup=?", (rows[1][1], rows[0][0]))
    conn.close()
    wl = Whitelist(path, keys)
    with pytest.raises(StoreError, match="failed authentication"):
        wl.lookup(rows[0][0])


def test_duplicate_enrolment_is_refused_and_keeps_the_first(store):
    path, keys, admin = store
    first = admin.enroll("pin", PIN, "a")
    with pytest.raises(StoreError, match="already enrolled"):
        admin.enroll("pin", PIN, "b")
    wl = Whitelist(path, keys)
    assert wl.lookup(wl.digest("pin", PIN)) == first and wl.count() == 1


def test_revoke_deletes_or_marks(store):
    path, keys, admin = store
    a = admin.enroll("nfc", UID, "a")
    b = admin.enroll("pin", PIN, "b")
    admin.revoke(a.credential_id)
    admin.revoke(b.credential_id, mark="lost")
    wl = Whitelist(path, keys)
    assert wl.lookup(wl.digest("nfc", UID)) is None
    assert wl.lookup(wl.digest("pin", PIN)).status == "lost"
    assert wl.count() == 1
    with pytest.raises(NotFoundError, match="no credential with id 'nope'"):
        admin.revoke("nope")


def test_inverted_window_is_refused(store):
    _, _, admin = store
    with pytest.raises(StoreError, match="later than valid-from"):
        admin.enroll("nfc", UID, "a", valid_from=UNTIL, valid_until=UNTIL - 1)


def test_not_a_database(tmp_path):
    p = tmp_path / "whitelist.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot"):
        WhitelistAdmin(p, generate())
    with pytest.raises(StoreError, match="cannot read whitelist"):
        Whitelist(p, generate())


def test_digest_is_keyed():
    assert lookup_digest(b"k" * 32, "pin", PIN) != lookup_digest(b"j" * 32, "pin", PIN)
