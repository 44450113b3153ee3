"""Credential lookup and row sealing: HMAC-SHA256 index, AES-GCM rows.

A credential is found by HMAC-SHA256(lookup key, kind ‖ 0x00 ‖ value), so the
file never holds a UID, fob number or PIN, and a plain hash cannot be brute
forced offline without the key. The rest of a row is sealed with AES-256-GCM
under the seal key with the lookup digest as associated data, so rows cannot be
swapped between credentials without detection.
"""

from __future__ import annotations

import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import StoreError

NONCE_BYTES = 12


def lookup_digest(lookup_key: bytes, kind: str, value: str) -> bytes:
    return hmac.digest(lookup_key, kind.encode() + b"\x00" + value.encode(), "sha256")


def fingerprint(digest: bytes) -> str:
    """A short printable name for a credential (unknown ones too), never its value."""
    return "fp:" + digest.hex()[:10]


class Sealer:
    """AES-GCM sealing of JSON rows, bound to their lookup digest."""

    def __init__(self, seal_key: bytes):
        self._aead = AESGCM(seal_key)

    def seal(self, digest: bytes, row: dict) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps(row, separators=(",", ":"), sort_keys=True).encode()
        return nonce + self._aead.encrypt(nonce, plain, digest)

    def open(self, digest: bytes, blob: bytes) -> dict:
        try:
            plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], digest)
        except (InvalidTag, ValueError):
            raise StoreError(f"whitelist row {fingerprint(digest)} failed authentication "
                             "(tampered, or sealed under another key)") from None
        return json.loads(plain)
