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


def _signed(payload: bytes) -> str:
    import base64

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    return b64(payload) + "." + b64(KEY.sign(payload))


def test_a_short_token_lives_no_longer_than_issued():
    """Clock skew is allowed on the issue time, not added to the lifetime."""
    t = issue(KEY, "door-a1", now=NOW, ttl=1)
    with pytest.raises(TokenError, match="has expired"):
        verifier().verify(t, NOW + 1.5)
    assert verifier().verify(issue(KEY, "door-a1", now=NOW + 20, ttl=1), NOW)  # office ahead


@pytest.mark.parametrize("payload, reason", [
    (b'{"door":"door-a1","exp":NaN,"iat":1790000000,"nonce":"n1"}', "lacks a field"),
    (b'{"door":"door-a1","exp":1e400,"iat":1790000000,"nonce":"n2"}', "'exp' is not a finite"),
    (b'{"door":"door-a1","exp":"1790000010","iat":1790000000,"nonce":"n3"}', "'exp' is not a"),
    (b'{"door":"door-a1","exp":1790000000,"iat":1790000010,"nonce":"n4"}', "must live between"),
])
def test_signed_tokens_with_impossible_times_are_refused(payload, reason):
    with pytest.raises(TokenError, match=reason):
        verifier().verify(_signed(payload), NOW)


def test_used_tokens_are_remembered_on_disk_sealed(tmp_path):
    from accessd.storage.used_tokens import UsedTokens
    used = UsedTokens(tmp_path / "tokens-used.db", b"k" * 32)
    v = TokenVerifier(KEY.public_key(), "door-a1", used)
    t = issue(KEY, "door-a1", now=NOW, ttl=600)
    v.verify(t, NOW)
    used.close()
    again = TokenVerifier(KEY.public_key(), "door-a1",
                          UsedTokens(tmp_path / "tokens-used.db", b"k" * 32))   # a restart
    with pytest.raises(TokenError, match="already used"):
        again.verify(t, NOW + 300)
    nonce = __import__("json").loads(
        __import__("base64").urlsafe_b64decode(t.split(".")[0] + "==="))["nonce"]
    for f in tmp_path.iterdir():
        data = f.read_bytes()
        assert nonce.encode() not in data and bytes.fromhex(nonce) not in data
    # expired entries go as new ones come
    again.verify(issue(KEY, "door-a1", now=NOW + 700, ttl=30), NOW + 700)
    assert again.used.count() == 1


def test_a_token_stays_used_after_the_door_restarts(tmp_path):
    office = Office(tmp_path)
    office.publish()
    config = office.door()
    t = issue(office.site.keys.signing, "door-a1", now=time.time(), ttl=600, by="intercom")
    d = DaemonProcess(config).wait_ready()
    try:
        assert d.request({"op": "unlock", "token": t})["ok"]
    finally:
        d.terminate()
    d = DaemonProcess(config).wait_ready()
    try:
        r = d.request({"op": "unlock", "token": t})
        assert not r["ok"] and "already used (replay)" in r["error"]
    finally:
        d.terminate()
    office.site.close()


def test_a_used_token_stays_used_when_the_clocks_step_forward_and_back(tmp_path):
    """A bad time server moves the door's (and the office's) clock a day ahead, then
    back: the token used before the step is still refused after it. (The list was
    once pruned by the door's clock, so the step ahead forgot it.)"""
    from accessd.storage.used_tokens import UsedTokens
    used = UsedTokens(tmp_path / "tokens-used.db", b"k" * 32)
    v = TokenVerifier(KEY.public_key(), "door-a1", used)
    t = issue(KEY, "door-a1", now=NOW, ttl=600)
    v.verify(t, NOW)
    ahead = NOW + 86400
    v.verify(issue(KEY, "door-a1", now=ahead, ttl=30), ahead)   # used while a day ahead
    used.close()
    v = TokenVerifier(KEY.public_key(), "door-a1",
                      UsedTokens(tmp_path / "tokens-used.db", b"k" * 32))   # and a restart
    with pytest.raises(TokenError, match="older than one the door has already used"):
        v.verify(t, NOW + 60)                                   # the clock is back
    assert v.used.count() == 1          # the floor lets old rows go: the file stays small
    # the same in memory (a door without a data directory)
    m = verifier()
    m.verify(t, NOW)
    m.verify(issue(KEY, "door-a1", now=ahead, ttl=30), ahead)
    with pytest.raises(TokenError, match="older than one"):
        m.verify(t, NOW + 60)


def test_a_token_never_older_than_the_floor_by_the_allowed_skew_is_taken():
    """An office terminal whose clock runs 30 s ahead (the skew allowed) does not lock
    out another terminal's fresh token."""
    v = verifier()
    v.verify(issue(KEY, "door-a1", now=NOW + 30, ttl=30), NOW)
    assert v.verify(issue(KEY, "door-a1", now=NOW, ttl=1), NOW)


@pytest.mark.parametrize("field", ["exp", "iat"])
def test_signed_times_too_large_for_a_float_are_refused_not_crashed(field):
    """A site-signed integer above 1e308 is refused with the reason (it once raised
    OverflowError: 'internal error', and no rejection was logged)."""
    times = {"exp": 1_790_000_010, "iat": 1_790_000_000, field: 10 ** 400}
    payload = ('{"door":"door-a1","exp":%d,"iat":%d,"nonce":"n9"}'
               % (times["exp"], times["iat"])).encode()
    with pytest.raises(TokenError, match=f"'{field}' is not a finite number"):
        verifier().verify(_signed(payload), NOW)
