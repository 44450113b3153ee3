"""Intercom unlock tokens: signed at the office, accepted once by the right door."""

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accessd.sync.token import TokenError, TokenVerifier, issue
from accessd.testing import DaemonProcess

from .test_sync import Office, events

KEY = Ed25519PrivateKey.generate()
NOW = 1_790_000_000.0


def verifier(door="door-a1"):
    return TokenVerifier(KEY.public_key(), door)


def test_a_token_opens_once():
    v = verifier()
    t = issue(KEY, "door-a1", now=NOW, by="intercom-12A")
    assert v.verify(t, NOW + 5)["by"] == "intercom-12A"
    with pytest.raises(TokenError, match="already used .replay"):
        v.verify(t, NOW + 6)


@pytest.mark.parametrize("make,when,reason", [
    (lambda: issue(KEY, "door-b1", now=NOW), NOW, "is for door 'door-b1'"),
    (lambda: issue(KEY, "door-a1", now=NOW, ttl=30), NOW + 61, "has expired"),
    (lambda: issue(KEY, "door-a1", now=NOW + 120), NOW, "issued in the future"),
    (lambda: issue(Ed25519PrivateKey.generate(), "door-a1", now=NOW), NOW, "bad signature"),
    (lambda: issue(KEY, "door-a1", now=NOW)[:-4] + "AAAA", NOW, "bad signature"),
    (lambda: "not-a-token", NOW, "malformed token"),
    (lambda: "a.b.c", NOW, "malformed token"),
])
def test_bad_tokens_are_refused(make, when, reason):
    with pytest.raises(TokenError, match=reason):
        verifier().verify(make(), when)


def test_ttl_is_bounded():
    with pytest.raises(TokenError, match="ttl must be"):
        issue(KEY, "door-a1", now=NOW, ttl=3600)


def test_the_door_opens_for_a_token_from_its_office(tmp_path):
    office = Office(tmp_path)
    office.publish()
    config = office.door()
    d = DaemonProcess(config).wait_ready()
    try:
        t = issue(office.site.keys.signing, "door-a1", now=time.time(), by="intercom-12A")
        r = d.request({"op": "unlock", "token": t})
        assert r["ok"] and r["relay"] == "unlocked"
        again = d.request({"op": "unlock", "token": t})
        assert not again["ok"] and "already used (replay)" in again["error"]
        other = issue(office.site.keys.signing, "door-b1", now=time.time())
        assert "is for door 'door-b1'" in d.request({"op": "unlock", "token": other})["error"]
    finally:
        d.terminate()
    opened = [e["reason"] for e in events(config, "unlock.remote")]
    assert len(opened) == 1 and opened[0].startswith("remote unlock by token from intercom-12A")
    assert len(events(config, "unlock.rejected")) == 2
    office.site.close()
