"""Signed, short-lived unlock tokens for the intercom and residents' apps.

    base64url(JSON {"door", "exp", "nonce", "by"}) "." base64url(Ed25519 signature)

The office signs with the site key (`accessctl token`); the door verifies with
the site's public key from its key file, checks that the token names this door,
has not expired, does not live longer than MAX_TTL, and that its nonce has not
been used before (replays are refused). Pure apart from the signature check.
"""

from __future__ import annotations

import base64
import json
import secrets

from cryptography.exceptions import InvalidSignature

from ..errors import AccessdError

MAX_TTL = 600.0     # seconds a token may live at most
SKEW = 30.0         # clock difference tolerated between office and door


class TokenError(AccessdError, ValueError):
    """An unlock token was refused; the message says why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(signing_key, door: str, *, now: float, ttl: float = 30.0, by: str = "") -> str:
    if not 0 < ttl <= MAX_TTL:
        raise TokenError(f"ttl must be 1-{MAX_TTL:g} seconds")
    payload = json.dumps({"door": door, "exp": now + ttl, "iat": now,
                          "nonce": secrets.token_hex(16), "by": by[:64]},
                         separators=(",", ":"), sort_keys=True).encode()
    return _b64(payload) + "." + _b64(signing_key.sign(payload))


class TokenVerifier:
    """Checks tokens for one door and remembers used nonces until they expire."""

    def __init__(self, public_key, door: str):
        self.public_key = public_key
        self.door = door
        self.used: dict[str, float] = {}

    def verify(self, token: str, now: float) -> dict:
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 2048:
            raise TokenError("malformed token")
        body, sig = token.split(".")
        try:
            payload, signature = _unb64(body), _unb64(sig)
        except (ValueError, TypeError):
            raise TokenError("malformed token (not base64url)") from None
        try:
            self.public_key.verify(signature, payload)
        except InvalidSignature:
            raise TokenError("bad signature: not issued by this site, or altered") from None
        try:
            p = json.loads(payload)
            door, exp, iat, nonce = str(p["door"]), float(p["exp"]), float(p["iat"]), str(p["nonce"])
        except (ValueError, KeyError, TypeError):
            raise TokenError("token lacks a field or has a wrong type") from None
        if door != self.door:
            raise TokenError(f"token is for door {door!r}, not this one")
        if exp - iat > MAX_TTL:
            raise TokenError(f"token lives longer than {MAX_TTL:g} s")
        if now > exp + SKEW:
            raise TokenError("token has expired")
        if iat > now + SKEW:
            raise TokenError("token is issued in the future (check the clocks)")
        self.used = {n: e for n, e in self.used.items() if e + SKEW >= now}
        if nonce in self.used:
            raise TokenError("token was already used (replay)")
        self.used[nonce] = exp
        return p
