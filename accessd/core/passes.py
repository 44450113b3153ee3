"""Signed QR passes for visitors and couriers: the format, signing and checking. Pure.

The office signs a pass with the site's Ed25519 key; a door checks it offline
with the site's public key (from its key file), so a pass cannot be made or
altered without the office, and a pass from another site does not verify.

Text (what the QR code holds, all in QR's alphanumeric set, so a pass fits a
version 8-10 code): `AP1:` + base32 (RFC 4648, no padding) of payload ‖ signature.
The signature is Ed25519 over "accessd-pass/1" ‖ 0x00 ‖ payload. Payload, big-endian:

| bytes | field                                        |
|-------|----------------------------------------------|
| 1     | format version (1)                           |
| 8     | pass id (random; revocation names it)        |
| 4     | valid from, UTC epoch seconds                |
| 4     | valid until, UTC epoch seconds               |
| 2     | entries allowed at each door (1-1000)        |
| 1+n   | site id (UTF-8, length first)                |
| 1+n   | door group                                   |
| 1+n   | role (visitor, courier, contractor)          |
| 1+n   | label, who it is for ("DHL courier")         |
"""

from __future__ import annotations

import base64
import binascii
import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from ..errors import CredentialFormatError
from .credentials import TEMPORARY_ROLES, CredentialRecord

PREFIX = "AP1:"
VERSION = 1
CONTEXT = b"accessd-pass/1\x00"
SIG_BYTES = 64
MAX_USES = 1000
MAX_TEXT = 1024       # what a door reads from a scanner line at most
LABEL_MAX = 40
_HEAD = struct.Struct(">B8sIIH")

FORGED = "denied: pass signature invalid (forged, altered, or from another site)"
REVOKED = "denied: pass revoked"


class PassFormatError(CredentialFormatError):
    """Not a pass at all (random text, a cut-off scan): a bad frame, not a presentation."""


@dataclass(frozen=True)
class Pass:
    pass_id: str          # 16 hex digits
    valid_from: int
    valid_until: int
    uses: int
    site: str
    group: str
    role: str
    label: str

    @property
    def credential_id(self) -> str:
        return f"pass-{self.pass_id}"

    def record(self) -> CredentialRecord:
        """The whitelist-like record the door decides the pass with (decide() checks
        its window, its entries and the door mode as for any credential)."""
        return CredentialRecord(credential_id=self.credential_id, kind="qr",
                                holder=self.label, assurance="low", status="active",
                                valid_from=float(self.valid_from),
                                valid_until=float(self.valid_until), role=self.role,
                                uses=self.uses)


def _lp(text: str, what: str, most: int = 64) -> bytes:
    raw = text.encode()
    if not 1 <= len(raw) <= most:
        raise CredentialFormatError(f"pass {what} must be 1-{most} bytes, got {len(raw)}")
    return bytes([len(raw)]) + raw


def new_pass(*, site: str, group: str, role: str, label: str, valid_from: int,
             valid_until: int, uses: int) -> Pass:
    """A pass with a fresh id, its fields checked."""
    if role not in TEMPORARY_ROLES:
        raise CredentialFormatError(f"pass role must be one of {', '.join(TEMPORARY_ROLES)}, "
                                    f"got {role!r}")
    if not 1 <= uses <= MAX_USES:
        raise CredentialFormatError(f"pass entries must be 1-{MAX_USES}, got {uses}")
    if not 0 <= valid_from < 2 ** 32 or not 0 <= valid_until < 2 ** 32:
        raise CredentialFormatError("a pass runs from 1970 to 2106-02-07 at the latest "
                                    "(its times are 32-bit in the QR code)")
    if valid_until <= valid_from:
        raise CredentialFormatError("pass must end after it starts")
    if len(label.encode()) > LABEL_MAX:
        raise CredentialFormatError(f"pass label must be at most {LABEL_MAX} bytes")
    return Pass(secrets.token_hex(8), int(valid_from), int(valid_until), uses, site, group,
                role, label)


def payload(p: Pass) -> bytes:
    return (_HEAD.pack(VERSION, bytes.fromhex(p.pass_id), p.valid_from, p.valid_until, p.uses)
            + _lp(p.site, "site") + _lp(p.group, "group") + _lp(p.role, "role")
            + _lp(p.label, "label", LABEL_MAX))


def sign(p: Pass, signing_key) -> str:
    """The pass as QR text, signed with the site's Ed25519 private key."""
    body = payload(p)
    sig = signing_key.sign(CONTEXT + body)
    return PREFIX + base64.b32encode(body + sig).decode().rstrip("=")


def looks_like(text: str) -> bool:
    """Starts as a pass does (scanners may print it in lower case)."""
    return isinstance(text, str) and text[:len(PREFIX)].upper() == PREFIX


def parse(text: str) -> tuple[Pass, bytes, bytes]:
    """(pass, payload, signature) from QR text; PassFormatError if it is not a pass."""
    if not looks_like(text):
        raise PassFormatError("not an accessd pass")
    if len(text) > MAX_TEXT:
        raise PassFormatError(f"pass text too long ({len(text)} characters)")
    b32 = text[len(PREFIX):].strip().upper()
    try:
        raw = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    except (binascii.Error, ValueError):
        raise PassFormatError("pass text is not base32 (a damaged scan?)") from None
    if len(raw) < _HEAD.size + 4 + SIG_BYTES:
        raise PassFormatError(f"pass too short ({len(raw)} bytes)")
    body, sig = raw[:-SIG_BYTES], raw[-SIG_BYTES:]
    version, pid, vfrom, vuntil, uses = _HEAD.unpack_from(body)
    if version != VERSION:
        raise PassFormatError(f"pass format version {version} is not known here")
    fields, at = [], _HEAD.size
    for what in ("site", "group", "role", "label"):
        if at >= len(body) or at + 1 + body[at] > len(body):
            raise PassFormatError(f"pass cut short in its {what}")
        n = body[at]
        try:
            fields.append(body[at + 1:at + 1 + n].decode())
        except UnicodeDecodeError:
            raise PassFormatError(f"pass {what} is not UTF-8") from None
        at += 1 + n
    if at != len(body):
        raise PassFormatError(f"pass has {len(body) - at} bytes after its fields")
    return Pass(pid.hex(), vfrom, vuntil, uses, *fields), body, sig


def verify(text: str, public_key, *, site: str, group: str,
           revoked: frozenset[str] = frozenset()) -> tuple[Pass | None, str]:
    """Check a pass for this door: (the pass, "") if it may be decided, or (pass or
    None, the reason it is refused). Raises PassFormatError for text that is not a
    pass. Window and entries are left to decide()."""
    p, body, sig = parse(text)
    try:
        public_key.verify(sig, CONTEXT + body)
    except InvalidSignature:
        return None, FORGED
    if p.site != site:   # signed by this site's key yet naming another: refuse anyway
        return None, FORGED
    if p.group != group:
        return p, f"denied: pass for door group '{p.group}', not this door's ('{group}')"
    if p.pass_id in revoked:
        return p, REVOKED
    if p.role not in TEMPORARY_ROLES or not 1 <= p.uses <= MAX_USES:
        return p, "denied: pass fields out of range"
    return p, ""
