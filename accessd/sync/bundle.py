"""Whitelist bundles: what the office publishes and a door applies.

  MAGIC | header length (4 bytes, big endian) | header (JSON) | ciphertext | signature

The header (site, group, doors, version, issue and expiry time, nonce, plaintext
SHA-256) is in clear so a door can reject a bundle cheaply, but it is covered by
the signature and is the AES-GCM associated data. The plaintext is a complete
door whitelist database (rows sealed under the door-group key, HMAC-indexed),
encrypted with the door-group key. The Ed25519 signature covers everything
before it. A door checks, in order: format, signature, site, door, version,
expiry, decryption, digest; the first failure is the reason it gives.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import AccessdError

MAGIC = b"ACCESSD-BUNDLE/1\n"
SIG_BYTES = 64
MAX_HEADER = 1 << 20


class BundleError(AccessdError, ValueError):
    """A bundle was rejected; the message says why."""


@dataclass(frozen=True)
class Header:
    site: str
    group: str
    doors: tuple[str, ...]
    version: int
    issued: float
    expires: float
    count: int


def seal(header: Header, plaintext: bytes, group_key: bytes, signing_key) -> bytes:
    nonce = os.urandom(12)
    h = {"site": header.site, "group": header.group, "doors": list(header.doors),
         "version": header.version, "issued": header.issued, "expires": header.expires,
         "count": header.count, "nonce": nonce.hex(), "sha256": sha256(plaintext).hexdigest(),
         "length": len(plaintext) + 16}  # ciphertext bytes (AES-GCM adds a 16-byte tag)
    hb = json.dumps(h, sort_keys=True, separators=(",", ":")).encode()
    body = MAGIC + len(hb).to_bytes(4, "big") + hb
    signed = body + AESGCM(group_key).encrypt(nonce, plaintext, body)
    return signed + signing_key.sign(signed)


MAX_LENGTH = 1 << 34  # 16 GiB: no whitelist comes near it


def _int_field(h: dict, name: str, lo: int, hi: int, what: str = "bundle header") -> int:
    """A header integer, checked as untrusted input: a JSON integer (not a bool, a
    float, a string or a list) within [lo, hi]."""
    v = h.get(name)
    if type(v) is not int:
        raise BundleError(f"{what} field {name!r} must be an integer, "
                          f"not {type(v).__name__}")
    if not lo <= v <= hi:
        raise BundleError(f"{what} field {name!r} is out of range ({v})")
    return v


def _number_field(h: dict, name: str, what: str = "bundle header") -> float:
    v = h.get(name)
    try:
        ok = type(v) in (int, float) and math.isfinite(v)
    except OverflowError:   # an integer beyond any float
        ok = False
    if not ok:
        raise BundleError(f"{what} field {name!r} must be a finite number")
    return float(v)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def peek(blob: bytes) -> dict:
    """The clear header, unverified (for listings only: never act on it). Every
    problem is a BundleError, whatever the bytes."""
    if not isinstance(blob, (bytes, bytearray)) or not blob.startswith(MAGIC) \
            or len(blob) < len(MAGIC) + 4:
        raise BundleError("not an accessd bundle (bad magic)")
    n = int.from_bytes(blob[len(MAGIC):len(MAGIC) + 4], "big")
    if n > MAX_HEADER or len(MAGIC) + 4 + n + SIG_BYTES > len(blob):
        raise BundleError("truncated bundle (header or signature missing)")
    try:
        h = json.loads(blob[len(MAGIC) + 4:len(MAGIC) + 4 + n],
                       parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise BundleError("bundle header is not valid JSON") from None
    if not isinstance(h, dict):
        raise BundleError("bundle header is not a JSON object")
    length = _int_field(h, "length", 16, MAX_LENGTH)  # AES-GCM: at least its 16-byte tag
    expected = len(MAGIC) + 4 + n + length + SIG_BYTES
    if len(blob) != expected:
        raise BundleError(f"truncated bundle ({len(blob)} of {expected} bytes)"
                          if len(blob) < expected else
                          f"bundle has {len(blob) - expected} bytes too many")
    return h


def parse_header(h: dict) -> tuple[Header, bytes, str]:
    """The header's fields, each checked for type and range: (Header, nonce, sha256)."""
    doors = h.get("doors")
    if not isinstance(doors, list) or not all(isinstance(d, str) for d in doors):
        raise BundleError("bundle header field 'doors' must be a list of door ids")
    for name in ("site", "group", "nonce", "sha256"):
        if not isinstance(h.get(name), str):
            raise BundleError(f"bundle header field {name!r} must be a string")
    try:
        nonce = bytes.fromhex(h["nonce"])
    except ValueError:
        nonce = b""
    if len(nonce) != 12:
        raise BundleError("bundle header field 'nonce' must be 12 bytes in hex")
    header = Header(h["site"], h["group"], tuple(doors), _int_field(h, "version", 1, 2**63 - 1),
                    _number_field(h, "issued"), _number_field(h, "expires"),
                    _int_field(h, "count", 0, 2**63 - 1))
    return header, nonce, h["sha256"]


def open_(blob: bytes, *, public_key, group_key: bytes, site: str, door: str,
          current_version: int, now: float) -> tuple[Header, bytes]:
    """Verify and decrypt a bundle for this door. Raises BundleError with the reason.

    A bundle of the current version raises BundleError with .same = True (not news,
    not an attack), which callers treat as "up to date".
    """
    h = peek(blob)
    signed, sig = blob[:-SIG_BYTES], blob[-SIG_BYTES:]
    try:
        public_key.verify(sig, signed)
    except InvalidSignature:
        raise BundleError("bad signature: not signed by this site's key, or altered") from None
    header, nonce, digest = parse_header(h)
    if header.site != site:
        raise BundleError(f"bundle is for site {header.site!r}, this door belongs to {site!r}")
    if door not in header.doors:
        raise BundleError(f"bundle for group {header.group!r} does not name this door ({door})")
    if header.version == current_version:
        err = BundleError(f"version {header.version} is already applied")
        err.same = True
        raise err
    if header.version < current_version:
        raise BundleError(f"version {header.version} is older than the applied "
                          f"{current_version} (rollback or replay)")
    if now >= header.expires:
        raise BundleError(f"bundle version {header.version} has expired")
    n = int.from_bytes(blob[len(MAGIC):len(MAGIC) + 4], "big")
    body_end = len(MAGIC) + 4 + n
    try:
        plaintext = AESGCM(group_key).decrypt(nonce, signed[body_end:], signed[:body_end])
    except (InvalidTag, ValueError):
        raise BundleError(f"cannot decrypt: not encrypted for this door's group "
                          f"(bundle group {header.group!r})") from None
    if sha256(plaintext).hexdigest() != digest:
        raise BundleError("decrypted whitelist does not match its digest")
    return header, plaintext
