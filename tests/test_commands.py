"""The signed command format (live/commands.py) on its own: what a door accepts and
why it refuses the rest; the capture reply sealed to the office's one-off key."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accessd.live import commands as wire
from accessd.storage.used_tokens import MemoryUsedTokens

KEY = Ed25519PrivateKey.generate()
NOW = 1_800_000_000.0


def verifier(door="front"):
    return wire.CommandVerifier(KEY.public_key(), "riverside", door, MemoryUsedTokens())


def sign(cmd="mode", args=None, **kw):
    kw = {"site": "riverside", "door": "front", "now": NOW, **kw}
    return wire.sign(KEY, cmd=cmd, args={"mode": "lockdown"} if args is None else args, **kw)


def test_a_good_command_is_taken_once():
    v = verifier()
    message, nonce = sign(by="alice")
    c = v.verify(message, NOW + 1)
    assert (c.cmd, c.args, c.nonce, c.by) == ("mode", {"mode": "lockdown"}, nonce, "alice")
    with pytest.raises(wire.CommandError, match="replay") as e:
        v.verify(message, NOW + 2)
    assert e.value.nonce == nonce and e.value.cmd == "mode"   # for the ack


@pytest.mark.parametrize("cmd,args,why", [
    ("mode", {"mode": "open-sesame"}, "mode must be one of normal, lockdown, held-open"),
    ("mode", {"mode": "normal", "extra": 1}, "mode takes no argument 'extra'"),
    ("unlock", {}, "unlock needs a 'token'"),
    ("capture", {"timeout": 0, "reply_key": "x"}, "capture needs a 'timeout' of 1-600"),
    ("capture", {"timeout": 30, "reply_key": "short"}, "capture needs a 'reply_key'"),
    ("reboot", {}, "unknown command 'reboot'"),
])
def test_the_office_cannot_sign_a_bad_command(cmd, args, why):
    with pytest.raises(wire.CommandError, match=why):
        sign(cmd, args)


def test_expiry_clock_skew_and_lifetime():
    v = verifier()
    with pytest.raises(wire.CommandError, match="has expired"):
        v.verify(sign(ttl=60)[0], NOW + 61)
    with pytest.raises(wire.CommandError, match="issued in the future"):
        v.verify(sign()[0], NOW - 31)
    assert v.verify(sign()[0], NOW - 29).cmd == "mode"       # 30 s of skew allowed
    with pytest.raises(wire.CommandError, match="ttl must be"):
        sign(ttl=301)


@pytest.mark.parametrize("message,why", [
    (b"", "malformed command"),
    (b"a.b.c", "malformed command"),
    (b"\xff\xfe.x", "malformed command"),
    (b"x" * 9000, "too long"),
    (b"eyJ2IjoxfQ.AAAA", "bad signature"),
])
def test_garbage_is_refused_with_a_reason(message, why):
    with pytest.raises(wire.CommandError, match=why):
        verifier().verify(message, NOW)


def test_a_command_for_another_door_or_site_is_refused():
    with pytest.raises(wire.CommandError, match="for door 'back'"):
        verifier().verify(sign(door="back")[0], NOW)
    with pytest.raises(wire.CommandError, match="for site 'elsewhere'"):
        verifier().verify(sign(site="elsewhere")[0], NOW)


def test_the_capture_reply_opens_only_with_the_office_key():
    priv, pub = wire.reply_keypair()
    sealed = wire.seal_reply(pub, b'{"kind": "nfc", "value": "04A1B2C3"}')
    assert "04A1B2C3" not in sealed
    assert wire.open_reply(priv, sealed) == b'{"kind": "nfc", "value": "04A1B2C3"}'
    other, _ = wire.reply_keypair()
    with pytest.raises(wire.CommandError, match="cannot be opened"):
        wire.open_reply(other, sealed)
    with pytest.raises(wire.CommandError, match="cannot be opened"):
        wire.open_reply(priv, sealed[:-4] + "AAAA")


@pytest.mark.parametrize("field", ["exp", "iat"])
def test_a_signed_time_too_large_for_a_float_is_refused_with_a_reason(field):
    """A site-signed exp or iat above 1e308 is a CommandError the door logs as
    cmd.rejected (it was an OverflowError: 'internal error', nothing logged)."""
    import json
    payload = {"v": 1, "site": "riverside", "door": "front", "cmd": "sync-now", "args": {},
               "iat": int(NOW), "exp": int(NOW) + 60, "nonce": "n" * 32, "by": "x"}
    payload[field] = 10 ** 400
    body = json.dumps(payload).encode()
    message = (wire._b64(body) + "." + wire._b64(KEY.sign(wire.DOMAIN + body))).encode()
    with pytest.raises(wire.CommandError, match=f"'{field}' is not a finite number"):
        verifier().verify(message, NOW)
