"""NTAG 424 DNA, the reader's side: what a door and the office send to the card and
how they check its answers. Pure apart from `send`, the APDU exchange it is given
(nfcpy's `Type4Tag.transceive` at a door, a list of answers in a test).

Key hierarchy (README "Secure cards"): the office holds one AES-128 card master key.
Every card gets its own keys, diversified from it and the card's UID (AN10922):

| key | purpose                                                  | held by            |
|-----|----------------------------------------------------------|--------------------|
| 0   | application master: changes keys and file settings       | office only        |
| 1   | door key: AuthenticateEV2First at a door, and the SUN MAC | doors (per card)   |
| 2   | SDM meta-read: encrypts the UID and counter in the SUN    | doors (per card)   |

A door checks a card in one tap (`verify`):
1. selects the NDEF application and reads its NDEF file: the card mirrors a fresh
   SUN message into it (encrypted UID and read counter, MAC), its counter one up;
2. authenticates with key 1 (AuthenticateEV2First: a fresh challenge, so a recorded
   session cannot be replayed) and reads the UID under secure messaging;
3. requires the anticollision UID, the SUN's UID and the authenticated UID to agree.
The caller refuses a counter not above the last one it saw from that card.

Errors: CardAuthError when the card cannot prove it holds its keys (a cloned UID,
another site's card, an altered answer), ProtocolError when its answers are not
NTAG 424 answers at all (cut, garbled): a bad frame, not a decision.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable

from ..errors import CardAuthError, ProtocolError
from . import ev2

Send = Callable[[bytes], bytes]

NDEF_APP = bytes.fromhex("D2760000850101")
NDEF_FILE_ID = bytes.fromhex("E104")
NDEF_FILE_NO = 2
DOOR_KEY_NO = 1
META_KEY_NO = 2
MASTER_KEY_NO = 0
KEY_VERSION = 1
SYSTEM = b"accessd:ntag424:k%d"      # AN10922 system identifier, per key number

ISO_OK = b"\x90\x00"
FOREIGN = "keys unknown here (another site's card?)"
_SUN = re.compile(rb"[?&]e=([0-9A-Fa-f]{32})&c=([0-9A-Fa-f]{16})")
# native status codes (91 xx)
_STATUS = {0x00: "ok", 0xAF: "more", 0xAE: "authentication error", 0x9D: "permission denied",
           0x1E: "integrity error", 0x7E: "length error", 0x40: "no such key",
           0xF0: "file not found", 0xBE: "boundary error", 0x9E: "parameter error",
           0x1C: "illegal command", 0xCA: "command aborted",
           0xA0: "application not found", 0xDE: "duplicate"}


@dataclass(frozen=True)
class CardKeys:
    """One card's keys (never in repr or a log): what a door needs (`door`, `meta`),
    and, at the office, the application master key."""
    door: bytes = field(repr=False)
    meta: bytes = field(repr=False)
    master: bytes | None = field(default=None, repr=False)

    def to_hex(self) -> str:
        """The door's part, for its sealed whitelist row."""
        return (self.door + self.meta).hex()

    @classmethod
    def from_hex(cls, text: str) -> "CardKeys":
        raw = bytes.fromhex(text)
        if len(raw) != 32:
            raise ValueError("a secure card's door keys are 32 bytes")
        return cls(raw[:16], raw[16:])


def card_keys(card_master: bytes, uid: bytes) -> CardKeys:
    """A card's keys from the site's card master key and its UID (AN10922)."""
    k = [ev2.diversify_aes128(card_master, uid, system=SYSTEM % n) for n in range(3)]
    return CardKeys(door=k[DOOR_KEY_NO], meta=k[META_KEY_NO], master=k[MASTER_KEY_NO])


@dataclass(frozen=True)
class Verified:
    uid: bytes = field(repr=False)
    counter: int


# ---- exchanges -----------------------------------------------------------------------

def _iso(send: Send, apdu: bytes, what: str) -> bytes:
    rsp = bytes(send(apdu))
    if len(rsp) < 2:
        raise ProtocolError(f"{what}: the card's answer is {len(rsp)} bytes, too short")
    if rsp[-2:] != ISO_OK:
        raise CardAuthError(f"{what}: the card answered {rsp[-2:].hex().upper()} "
                            "(not an NTAG 424 DNA set up for this site?)")
    return rsp[:-2]


def _native(send: Send, apdu: bytes, what: str, expect: int = 0x00) -> tuple[int, bytes]:
    rsp = bytes(send(apdu))
    if len(rsp) < 2 or rsp[-2] != 0x91:
        raise ProtocolError(f"{what}: not a native answer "
                            f"({rsp[-2:].hex().upper() if len(rsp) >= 2 else 'cut short'})")
    status = rsp[-1]
    if status != expect:
        raise CardAuthError(f"{what}: {_STATUS.get(status, f'status {status:02X}')}")
    return status, rsp[:-2]


def select_app(send: Send) -> None:
    _iso(send, b"\x00\xa4\x04\x0c\x07" + NDEF_APP + b"\x00", "select application")


def select_ndef_file(send: Send) -> None:
    _iso(send, b"\x00\xa4\x00\x0c\x02" + NDEF_FILE_ID, "select NDEF file")


def read_ndef(send: Send) -> bytes:
    """The NDEF file's content (its NLEN-long message), read in the clear."""
    select_ndef_file(send)
    data = _iso(send, b"\x00\xb0\x00\x00\x00", "read NDEF file")
    if len(data) < 2:
        raise ProtocolError("read NDEF file: no length field")
    n = int.from_bytes(data[:2], "big")
    if n > len(data) - 2:
        raise ProtocolError(f"read NDEF file: message of {n} bytes in {len(data) - 2}")
    return data[2:2 + n]


def authenticate(send: Send, key_no: int, key: bytes, *, rnd=os.urandom) -> ev2.Channel:
    """AuthenticateEV2First: a secure-messaging channel, or CardAuthError."""
    _, enc_rndb = _native(send, ev2.native_apdu(0x71, bytes([key_no, 0])),
                          "authenticate", expect=0xAF)
    if len(enc_rndb) != 16:
        raise ProtocolError(f"authenticate: challenge of {len(enc_rndb)} bytes, not 16")
    rnd_a = rnd(16)
    part2, rnd_b = ev2.ev2_first_reply(key, enc_rndb, rnd_a)
    _, answer = _native(send, ev2.native_apdu(0xAF, part2), "authenticate")
    if len(answer) != 32:
        raise ProtocolError(f"authenticate: answer of {len(answer)} bytes, not 32")
    return ev2.Channel(ev2.ev2_first_finish(key, key_no, rnd_a, rnd_b, answer))


def get_card_uid(send: Send, ch: ev2.Channel) -> bytes:
    """GetCardUID in CommMode.Full: the UID the card states under the session keys."""
    uid = _secure(send, ch, ch.wrap_mac(0x51), "get card UID", full=True)
    if len(uid) not in (4, 7, 10):
        raise ProtocolError(f"get card UID: {len(uid)} bytes")
    return uid


def _secure(send: Send, ch: ev2.Channel, apdu: bytes, what: str, *, full: bool = False) -> bytes:
    status, body = _native(send, apdu, what)
    return ch.open_response(status, body, full=full)


def parse_sun(ndef: bytes) -> tuple[bytes, bytes]:
    """The SUN parameters in the NDEF message: (encrypted PICCData, SDMMAC)."""
    m = _SUN.search(ndef)
    if m is None:
        raise CardAuthError("the card's NDEF message holds no SUN (e=…&c=…): "
                            "not personalised for this site")
    return bytes.fromhex(m.group(1).decode()), bytes.fromhex(m.group(2).decode())


def verify(send: Send, uid: bytes, keys: CardKeys, *, rnd=os.urandom) -> Verified:
    """The door's check of one tap (module docstring): the card's UID and read counter."""
    select_app(send)
    enc_picc, mac = parse_sun(read_ndef(send))
    sun = ev2.sun_verify(keys.meta, keys.door, enc_picc, mac)
    ch = authenticate(send, DOOR_KEY_NO, keys.door, rnd=rnd)
    stated = get_card_uid(send, ch)
    if not (stated == sun.uid == uid):
        raise CardAuthError("the card's authenticated UID is not the UID it showed "
                            "(a relay or an emulated card)")
    return Verified(uid, sun.counter)


# ---- office: personalising a blank card ----------------------------------------------

SUN_URL = "accessd.invalid/t?e={e}&c={c}"     # an NDEF URI record, https:// prefix


def ndef_template() -> tuple[bytes, int, int]:
    """The NDEF file (NLEN + a URI record with room for the SUN), and the offsets of
    the encrypted PICCData and of the MAC in the file."""
    text = SUN_URL.format(e="0" * 32, c="0" * 16).encode()
    record = b"\xd1\x01" + bytes([len(text) + 1]) + b"U\x04" + text
    data = len(record).to_bytes(2, "big") + record
    head = 2 + 5  # NLEN, then the record header and the URI prefix byte
    e_at = head + text.index(b"e=") + 2
    c_at = head + text.index(b"c=") + 2
    return data, e_at, c_at


def sdm_settings(e_at: int, c_at: int) -> bytes:
    """ChangeFileSettings data for the NDEF file (the AN12196 layout): SDM on, plain
    reads free, writes and changes with key 0; UID and counter mirrored in ASCII,
    encrypted with key 2 (meta read); the MAC with key 1 over nothing before it."""
    off = lambda n: n.to_bytes(3, "little")  # noqa: E731
    return (b"\x40" + b"\x00\xe0" + b"\xc1" + bytes([0xF0 | MASTER_KEY_NO,
                                                      META_KEY_NO << 4 | DOOR_KEY_NO])
            + off(e_at) + off(c_at) + off(c_at))


def personalise(send: Send, uid: bytes, keys: CardKeys, *, factory_key: bytes = bytes(16),
                rnd=os.urandom) -> None:
    """A blank card (factory keys) made this site's: the NDEF template written, SDM set
    up, keys 1 and 2 then key 0 changed to the card's own. CardAuthError if the card
    is not blank (another site's, or already personalised)."""
    select_app(send)
    data, e_at, c_at = ndef_template()
    # a blank card's NDEF file is free to write: the template goes in the clear first
    select_ndef_file(send)
    _iso(send, b"\x00\xd6\x00\x00" + bytes([len(data)]) + data, "write NDEF template")
    ch = authenticate(send, MASTER_KEY_NO, factory_key, rnd=rnd)
    _secure(send, ch, ch.wrap_full(0x5F, bytes([NDEF_FILE_NO]), sdm_settings(e_at, c_at)),
            "change file settings")
    for no, new in ((DOOR_KEY_NO, keys.door), (META_KEY_NO, keys.meta)):
        plain = ev2.change_key_data(no, MASTER_KEY_NO, new, factory_key, KEY_VERSION)
        _secure(send, ch, ch.wrap_full(0xC4, bytes([no]), plain), f"change key {no}")
    plain = ev2.change_key_data(MASTER_KEY_NO, MASTER_KEY_NO, keys.master, None, KEY_VERSION)
    # the key just authenticated with changes: the card answers without a MAC
    _native(send, ch.wrap_full(0xC4, bytes([MASTER_KEY_NO]), plain), "change key 0")


def holds_key(send: Send, key_no: int, key: bytes | None, *, rnd=os.urandom) -> bool:
    """Does the card (its selected application) hold this key? None: nothing to try."""
    if key is None:
        return False
    try:
        authenticate(send, key_no, key, rnd=rnd)
    except CardAuthError:
        return False
    return True


def state(send: Send, uid: bytes, keys: CardKeys | None, *, factory_key: bytes = bytes(16),
          rnd=os.urandom) -> dict:
    """What `accessctl card check` reports: blank, this site's (with its counter), or
    unknown (another site's keys, or not an NTAG 424 DNA). keys None: no site to
    compare with, so a card that is not blank is unknown."""
    select_app(send)
    if holds_key(send, MASTER_KEY_NO, factory_key, rnd=rnd):
        return {"state": "blank", "detail": "factory keys: ready to enrol"}
    if not holds_key(send, MASTER_KEY_NO, keys and keys.master, rnd=rnd):
        return {"state": "foreign", "detail": FOREIGN}
    v = verify(send, uid, keys, rnd=rnd)
    return {"state": "enrolled", "detail": "this site's keys; SUN and door key check out",
            "counter": v.counter}
