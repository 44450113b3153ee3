"""Credential kinds, value normalisation and the whitelist record type (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import CredentialFormatError

KINDS = ("nfc", "fob", "pin")
STATUSES = ("active", "suspended", "lost")
# Roles whose passes fail closed when the door's whitelist is too old.
TEMPORARY_ROLES = ("visitor", "courier", "contractor")
# Cloneable identifiers: a 13.56 MHz UID, a 125 kHz fob number, a PIN alone. An NFC
# credential enrolled as a secure card (one of SECURE_CARDS) is "high": a door opens
# for it only when the card proves it holds its own keys.
ASSURANCE = {"nfc": "low", "fob": "low", "pin": "low"}
SECURE_CARDS = ("ntag424", "desfire")

_HEX = re.compile(r"^[0-9A-F]+$")


def normalize(kind: str, raw: str, *, pin_min: int = 4, pin_max: int = 8) -> str:
    """Return the canonical form of a credential value, or raise CredentialFormatError.

    nfc: ISO 14443A UID of 4, 7 or 10 bytes (or an 8-byte FeliCa IDm / ISO 14443B
         PUPI of 4 bytes) as hex; ':' '-' and spaces are ignored. Canonical: upper hex.
    fob: a 125 kHz fob or Wiegand card, in any form staff find printed on it or a
         reader gives (see `parse_fob`). Canonical: `<family>:<HEX>` (em40, em32,
         em24, w37, raw<N>).
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
        return parse_fob(value).canonical
    if kind == "pin":
        if not value.isdigit() or not value.isascii():
            raise CredentialFormatError("PIN must contain digits only")
        if not pin_min <= len(value) <= pin_max:
            raise CredentialFormatError(f"PIN must be {pin_min}-{pin_max} digits, got {len(value)}")
        return value
    raise CredentialFormatError(f"unknown credential kind {kind!r} (known: {', '.join(KINDS)})")


# ---- 125 kHz fobs and Wiegand cards: one credential, whichever reader reads it -------
#
# An EM4100 fob holds 40 bits: a version (customer) byte and a 32-bit id. Readers give
# different parts of it, so a fob is kept in the form staff know, and the whitelist
# also carries it under every narrower form a reader can give ("aliases"):
#
#   family  bits  what gives it                               enrol as (examples)
#   em40    40    RDM6300 serial reader (version + id)          0102B0A5FD, 0x0102b0a5fd,
#                                                               0004340098557 (13 digits)
#   em32    32    ascii-decimal serial reader, Wiegand-34       0045131261, 00688,42493
#   em24    24    Wiegand-26 (H10301): facility 8 : card 16     176:42493, 176,42493
#   w37     35    Wiegand-37 (H10304): facility 16 : card 19    capture, or w37:<hex>
#   rawN    N     a Wiegand reader's raw_bits frame (N <= 64)   raw40:<hex>, capture
#
# A reading matches an enrolment when they agree on every bit both know:
# - a reader giving fewer bits than were enrolled finds the fob under its alias (a
#   fob enrolled by its full ID opens at Wiegand-26 doors);
# - a reader giving more bits than were enrolled looks up its reading cut down to
#   each narrower form, and takes only a credential *enrolled* in that form, never
#   an alias: two fobs that differ only in the version byte are two credentials at
#   an RDM6300, while a fob enrolled by its printed decimal still opens there.
# The EM forms never match w37 or raw frames (other cards, other layouts).

EM_LADDER = (("em40", 40), ("em32", 32), ("em24", 24))  # richest first
EM_FAMILIES = frozenset(f for f, _ in EM_LADDER)
FAMILY_BITS = {"em40": 40, "em32": 32, "em24": 24, "w37": 35}
RAW_MAX_BITS = 64
_CANONICAL = re.compile(r"^(em40|em32|em24|w37|raw(\d{1,2})):([0-9A-F]+)$", re.IGNORECASE)
_PAIR = re.compile(r"^(\d{1,5})\s*[:,/]\s*(\d{1,5})$")


@dataclass(frozen=True)
class Fob:
    family: str  # em40, em32, em24, w37 or raw<N>
    bits: int
    number: int

    @property
    def canonical(self) -> str:
        return f"{self.family}:{self.number:0{(self.bits + 3) // 4}X}"

    @property
    def legacy(self) -> str:
        """The decimal it was enrolled as before canonical forms (the 32-bit id for an
        RDM6300 reading, the data bits for Wiegand)."""
        return str(self.number & 0xFFFFFFFF if self.family == "em40" else self.number)

    def aliases(self) -> list["Fob"]:
        """This fob as each narrower reader gives it (em40 -> em32 -> em24)."""
        if self.family not in EM_FAMILIES:
            return []
        return [Fob(f, b, self.number & ((1 << b) - 1)) for f, b in EM_LADDER if b < self.bits]

    def describe(self) -> str:
        """What staff would call it (no digits: shown in messages)."""
        return {"em40": "a full 40-bit EM ID", "em32": "a 32-bit fob number",
                "em24": "a 26-bit Wiegand facility:card",
                "w37": "a 37-bit Wiegand (H10304) card"}.get(
            self.family, f"a raw {self.bits}-bit Wiegand frame")


def _fob(family: str, bits: int, number: int) -> Fob:
    if number >= 1 << bits:
        raise CredentialFormatError(f"{family} value does not fit in {bits} bits")
    return Fob(family, bits, number)


def parse_fob(value: str) -> Fob:
    """Parse any form of a 125 kHz fob or Wiegand card number (see the table above).

    Decimal: up to 10 digits is the 32-bit number printed on a fob (e.g. 0045131261);
    13 digits (or a value above 32 bits) is the full 40-bit ID in decimal (e.g.
    0004340098557). Hex: 10 hex digits is the full EM ID (write it with 0x when it has
    no letter, or it reads as decimal); 0x with up to 8 hex digits is the 32-bit id.
    Pairs: facility:card with a facility of 0-255 is Wiegand-26 (e.g. 176:42493 or
    176,42493); a 4-5 digit first half is the 16:16 split of the 32-bit number
    (Wiegand-34, e.g. 00688,42493). Canonical forms (em40:..., raw40:...) are taken as is.
    """
    v = value.strip()
    if not v:
        raise CredentialFormatError("fob number is empty")
    m = _CANONICAL.match(v)
    if m:
        family, raw_bits, digits = m.group(1).lower(), m.group(2), m.group(3)
        if raw_bits is not None:
            bits = int(raw_bits)
            if not 1 <= bits <= RAW_MAX_BITS:
                raise CredentialFormatError(
                    f"a raw Wiegand frame has 1-{RAW_MAX_BITS} bits, not {bits}")
            family = f"raw{bits}"
        else:
            bits = FAMILY_BITS[family]
        return _fob(family, bits, int(digits, 16))
    m = _PAIR.match(v)
    if m:
        high, low = m.group(1), m.group(2)
        if int(low) > 0xFFFF:
            raise CredentialFormatError(
                f"card number {int(low)} after the '{v[len(high)]}' is above 65535")
        if len(high) <= 3:
            if int(high) > 0xFF:
                raise CredentialFormatError(
                    f"facility {int(high)} is above 255 (Wiegand-26 facility codes are "
                    "0-255; the 16:16 halves of a 32-bit number are written with 5 digits "
                    "each, e.g. 00688,42493)")
            return Fob("em24", 24, int(high) << 16 | int(low))
        if int(high) > 0xFFFF:
            raise CredentialFormatError(
                f"facility {int(high)} is above 65535 (Wiegand-26 facility codes are 0-255)")
        return Fob("em32", 32, int(high) << 16 | int(low))
    if v[:2].lower() == "0x":
        digits = v[2:]
        if not digits or not _HEX.match(digits.upper()):
            raise CredentialFormatError("fob number in hex must be 0x plus hex digits")
        if len(digits) == 10:
            return Fob("em40", 40, int(digits, 16))
        if len(digits) <= 8:
            return Fob("em32", 32, int(digits, 16))
        raise CredentialFormatError(
            f"0x plus {len(digits)} hex digits: give the full EM ID as 10 hex digits "
            "or the 32-bit number as up to 8")
    if v.isascii() and v.isdigit():
        number = int(v)
        if len(v) == 13 or (1 << 32) <= number:
            if number >= 1 << 40:
                raise CredentialFormatError(
                    f"{len(v)}-digit number is above 40 bits; not a 125 kHz fob number")
            if len(v) == 10:
                raise CredentialFormatError(
                    "10 decimal digits above 4294967295: if this is the fob's hex EM ID, "
                    "write it with 0x in front")
            return Fob("em40", 40, number)
        if len(v) > 10:
            raise CredentialFormatError(
                f"{len(v)} digits: a fob's decimal number has up to 10 digits (32 bits) "
                "or 13 (the full 40-bit ID)")
        return Fob("em32", 32, number)
    if len(v) == 10 and _HEX.match(v.upper()):
        return Fob("em40", 40, int(v, 16))
    raise CredentialFormatError(
        "fob number must be decimal (as printed), facility:card (e.g. 176:42493), "
        "the 10 hex digits of the EM ID, or raw<bits>:<hex>")


def reading_em(number: int, version: int | None) -> str:
    """The canonical value a 125 kHz serial reader gives: em40 with the version byte
    (RDM6300), em32 without it (ascii-decimal)."""
    if version is None:
        return Fob("em32", 32, number).canonical
    return Fob("em40", 40, version << 32 | number).canonical


def reading_wiegand(bits: int, number: int, raw: bool = False) -> str:
    """The canonical value of a Wiegand card frame: its data bits without parity
    (26 -> em24, 34 -> em32, 37 -> w37), or a raw frame's bits as they came."""
    if raw:
        return Fob(f"raw{bits}", bits, number).canonical
    family = {26: "em24", 34: "em32", 37: "w37"}[bits]
    return Fob(family, FAMILY_BITS[family], number).canonical


def lookup_values(kind: str, value: str) -> tuple[tuple[str, bool], ...]:
    """What a door looks a reading up under, in order, each with whether an alias row
    (a richer enrolment cut down) may answer: the reading itself (yes), for an EM fob
    the reading cut to each narrower form (no: only a fob enrolled in that form), then
    the plain decimal fobs were enrolled under before 2026-11-23 (no)."""
    if kind != "fob":
        return ((value, True),)
    fob = parse_fob(value)
    return ((fob.canonical, True), *((a.canonical, False) for a in fob.aliases()),
            (fob.legacy, False))


def whitelist_values(kind: str, value: str) -> list[str]:
    """The values one enrolled credential is published under: itself, then (a fob)
    each narrower form a reader may give."""
    if kind != "fob":
        return [value]
    fob = parse_fob(value)
    return [fob.canonical] + [a.canonical for a in fob.aliases()]


# What each reader (as staff describe a door's readers) gives; the README's table.
READER_GIVES = {
    "nfc": ("nfc",),
    "keypad": ("pin",),
    "rdm6300": ("em40",),
    "ascii-decimal": ("em32",),
    "wiegand-26": ("em24",),
    "wiegand-34": ("em32",),
    "wiegand-37": ("w37",),
}


def check_reader_name(name: str) -> str:
    if name in READER_GIVES or re.fullmatch(r"wiegand-raw-(\d{1,2})", name) and \
            1 <= int(name.rsplit("-", 1)[1]) <= RAW_MAX_BITS:
        return name
    raise CredentialFormatError(
        f"unknown reader {name!r} (known: {', '.join(READER_GIVES)}, wiegand-raw-<bits>)")


def reader_gives(name: str) -> tuple[str, ...]:
    name = check_reader_name(name)
    if name.startswith("wiegand-raw-"):
        return (f"raw{int(name.rsplit('-', 1)[1])}",)
    return READER_GIVES[name]


def gives_any(readers, family: str) -> bool:
    """Does one of these readers give this form? (readers None: any reader.)"""
    return readers is None or any(family in reader_gives(r) for r in readers)


def readers_matching(kind: str, value: str, readers) -> list[str]:
    """Which of these readers could match this enrolled (canonical) credential."""
    if kind != "fob":
        return [r for r in readers if kind in reader_gives(r)]
    family = parse_fob(value).family
    em = family in EM_FAMILIES
    return [r for r in readers
            if any(g == family or (em and g in EM_FAMILIES) for g in reader_gives(r))]


def unreadable_reason(kind: str, value: str, readers) -> str | None:
    """Why no reader of the estate could ever match this credential, or None."""
    readers = sorted(set(readers))
    if readers_matching(kind, value, readers):
        return None
    if kind != "fob":
        return f"no reader on this site reads a {kind} (readers: {', '.join(readers)})"
    fob = parse_fob(value)
    return (f"this is {fob.describe()}, which no reader on this site gives "
            f"(readers: {', '.join(readers)}); capture the card at a door to see what "
            "its reader gives (accessctl enroll --capture-at DOOR)")


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
    card: str = ""            # a secure card's type (SECURE_CARDS); "" for a bare UID
    card_keys: str = field(default="", repr=False)  # its door keys, hex (sealed row only)

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
        if self.card:
            row["card"], row["card_keys"] = self.card, self.card_keys
        return row

    @classmethod
    def from_row(cls, row: dict) -> "CredentialRecord":
        return cls(credential_id=row["id"], kind=row["kind"], holder=row.get("holder", ""),
                   assurance=row.get("assurance", "low"), status=row["status"],
                   valid_from=row.get("from"), valid_until=row.get("until"),
                   role=row.get("role", ""), schedule=row.get("schedule", ""),
                   duress=bool(row.get("duress", False)), uses=row.get("uses"),
                   card=row.get("card", ""), card_keys=row.get("card_keys", ""))
