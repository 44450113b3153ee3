"""Credential kinds, value normalisation and the whitelist record type (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import CredentialFormatError

KINDS = ("nfc", "fob", "pin")
STATUSES = ("active", "suspended", "lost")
# Roles whose passes fail closed when the door's whitelist is too old.
TEMPORARY_ROLES = ("visitor", "courier", "contractor")
# Cloneable identifiers: a 13.56 MHz UID, a 125 kHz fob number, a PIN alone.
ASSURANCE = {"nfc": "low", "fob": "low", "pin": "low"}

_HEX = re.compile(r"^[0-9A-F]+$")


def normalize(kind: str, raw: str, *, pin_min: int = 4, pin_max: int = 8) -> str:
    """Return the canonical form of a credential value, or raise CredentialFormatError.

    nfc: ISO 14443A UID of 4, 7 or 10 bytes (or an 8-byte FeliCa IDm / ISO 14443B
         PUPI of 4 bytes) as hex; ':' '-' and spaces are ignored. Canonical: upper hex.
    fob: a 125 kHz tag number, decimal (up to 13 digits) or 10 hex digits with
         a 0x prefix. Canonical: decimal of the number.
    pin: digits only, pin_min..pin_max long.
    """
    if not isinstance(raw, str):
        raise CredentialFormatError(f"{kind} value must be text, got {type(raw).__name__}")
    value = raw.strip()
    if kind == "nfc":
        uid = re.sub(r"[\s:\-]", "", value).upper()
        if not uid:
            raise CredentialFormatError("nfc UID is empty")
        if not _HEX.match(uid):
            raise CredentialFormatError("nfc UID must be hexadecimal (e.g. 04A1B2C3)")
        if len(uid) not in (8, 14, 16, 20):
            raise CredentialFormatError(
                f"nfc UID must be 4, 7, 8 or 10 bytes, got {len(uid) / 2:g} bytes")
        return uid
    if kind == "fob":
        if value.lower().startswith("0x"):
            digits = value[2:]
            if not digits or not _HEX.match(digits.upper()) or len(digits) > 10:
                raise CredentialFormatError("fob number in hex must be 0x plus 1-10 hex digits")
            return str(int(digits, 16))
        if not value.isdigit() or not value.isascii():
            raise CredentialFormatError("fob number must be decimal digits (or 0x + hex)")
        if len(value) > 13:
            raise CredentialFormatError(f"fob number has {len(value)} digits; at most 13")
        return str(int(value))
    if kind == "pin":
        if not value.isdigit() or not value.isascii():
            raise CredentialFormatError("PIN must contain digits only")
        if not pin_min <= len(value) <= pin_max:
            raise CredentialFormatError(f"PIN must be {pin_min}-{pin_max} digits, got {len(value)}")
        return value
    raise CredentialFormatError(f"unknown credential kind {kind!r} (known: {', '.join(KINDS)})")


@dataclass(frozen=True)
class CredentialRecord:
    """What the door knows about one credential (decrypted whitelist row)."""

    credential_id: str
    kind: str
    holder: str
    assurance: str
    status: str
    valid_from: float | None  # UTC epoch seconds, None = no bound
    valid_until: float | None
    role: str = ""            # from the office: resident, courier, visitor, staff, contractor
    schedule: str = ""        # from the office: the schedule that limits when it opens
    duress: bool = False      # a duress PIN: opens, and raises a silent alarm
    uses: int | None = None   # a pass good for this many entries at each door

    def to_row(self) -> dict:
        row = {"id": self.credential_id, "kind": self.kind, "holder": self.holder,
               "assurance": self.assurance, "status": self.status,
               "from": self.valid_from, "until": self.valid_until}
        if self.role:
            row["role"] = self.role
        if self.schedule:
            row["schedule"] = self.schedule
        if self.duress:
            row["duress"] = True
        if self.uses:
            row["uses"] = self.uses
        return row

    @classmethod
    def from_row(cls, row: dict) -> "CredentialRecord":
        return cls(credential_id=row["id"], kind=row["kind"], holder=row.get("holder", ""),
                   assurance=row.get("assurance", "low"), status=row["status"],
                   valid_from=row.get("from"), valid_until=row.get("until"),
                   role=row.get("role", ""), schedule=row.get("schedule", ""),
                   duress=bool(row.get("duress", False)), uses=row.get("uses"))
