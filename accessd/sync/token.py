"""Signed, short-lived unlock tokens for the intercom and residents' apps.

    base64url(JSON {"door", "exp", "nonce", "by"}) "." base64url(Ed25519 signature)

The office signs with the site key (`accessctl token`); the door verifies with
the site's public key from its key file, checks that the token names this door,
has not expired, does not live longer than MAX_TTL, and that its nonce has not
been used before (replays are refused, across restarts: the door keeps used
nonces on disk until they expire). Clock skew (SKEW) is allowed on the issue
time only: a token issued for 1 s works for at most 1 s.
"""

from __future__ import annotations

import base64
import json
import math
import secrets

from cryptography.exceptions import InvalidSignature

from ..errors import AccessdError
from ..storage.used_tokens import SKEW, MemoryUsedTokens

MAX_TTL = 600.0     # seconds a token may live at most


class TokenError(AccessdError, ValueError):
    """An unlock token was refused; the message says why."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(signing_key, door: str, *, now: float, ttl: float = 30.0, by: str = "") -> str:
    if not 0 < ttl <= MAX_TTL:
        raise TokenError(f"ttl must be 1-{MAX_TTL:g} seconds")
    payload = json.dumps({"door": door, "exp": now + ttl, "iat": now,
                          "nonce": secrets.token_hex(16), "by": by[:64]},
                         separators=(",", ":"), sort_keys=True).encode()
    return b64(payload) + "." + b64(signing_key.sign(payload))


def _finite(v: int | float) -> bool:
    """A finite float, or an integer that fits one (a signed 10**400 is not a time)."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def lifetime_problem(what: str, iat, exp, now: float, max_ttl: float) -> str | None:
    """Why a signed token or command is not valid at `now`, or None. The skew is
    allowed on the issue time only (the office's clock may run ahead); nothing lives
    longer than it was issued for, nor longer than max_ttl."""
    for name, v in (("exp", exp), ("iat", iat)):
        if type(v) not in (int, float) or not _finite(v):
            return f"{what} field {name!r} is not a finite number"
    exp, iat = float(exp), float(iat)
    if not 0 < exp - iat <= max_ttl:
        return f"{what} must live between 0 and {max_ttl:g} s"
    if now > exp:
        return f"{what} has expired"
    if iat > now + SKEW:
        return f"{what} is issued in the future (check the clocks)"
    return None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a token may carry")


class TokenVerifier:
    """Checks tokens for one door; `used` remembers used nonces until they expire
    (storage.used_tokens.UsedTokens on a door: on disk, across restarts)."""

    def __init__(self, public_key, door: str, used=None):
        self.public_key = public_key
        self.door = door
        self.used = used if used is not None else MemoryUsedTokens()

    def verify(self, token: str, now: float) -> dict:
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 2048:
            raise TokenError("malformed token")
        body, sig = token.split(".")
        try:
            payload, signature = unb64(body), unb64(sig)
        except (ValueError, TypeError):
            raise TokenError("malformed token (not base64url)") from None
        try:
            self.public_key.verify(signature, payload)
        except InvalidSignature:
            raise TokenError("bad signature: not issued by this site, or altered") from None
        try:
            p = json.loads(payload, parse_constant=_no_constant)
            door, exp, iat, nonce = str(p["door"]), p["exp"], p["iat"], str(p["nonce"])
        except (ValueError, KeyError, TypeError, RecursionError):
            raise TokenError("token lacks a field or has a wrong type") from None
        why = lifetime_problem("token", iat, exp, now, MAX_TTL)
        if why:
            raise TokenError(why)
        if door != self.door:
            raise TokenError(f"token is for door {door!r}, not this one")
        refused = self.used.claim(nonce, float(exp), float(iat))
        if refused:
            raise TokenError(f"token was {refused}" if refused.startswith("already") else
                             f"token is {refused}")
        return p
