"""MIFARE DESFire EV2/EV3, the reader's side: the site's application on the card,
how a door checks it and how the office sets it up. Pure apart from `send`, the
APDU exchange it is given (nfcpy's `Type4Tag.transceive`, or an emulated card).

Commands are DESFire native commands wrapped in ISO 7816 APDUs (CLA 0x90; status
0x91xx), as on an NTAG 424 DNA; AuthenticateEV2First and EV2 secure messaging are
the same protocol (protocols/ev2.py, reproduced from NXP's published vectors).

The site application, AID 0xACCE55, holds two AES-128 keys, diversified (AN10922)
from the site's card master key with the card's UID and the AID:

| key | purpose                                           | held by          |
|-----|---------------------------------------------------|------------------|
| 0   | application master: changes the application's keys | office only      |
| 1   | door key: AuthenticateEV2First at a door           | doors (per card) |

A door checks a card in one tap (`verify`): SelectApplication (the site's AID),
AuthenticateEV2First with key 1 (a fresh challenge each time: a recorded session
cannot be replayed, a UID copy cannot answer), then GetCardUID under secure
messaging, which must be the UID the card showed. No counter is needed: without
the key there is nothing to copy, and every session is new.

The card's PICC master key and its other applications are left as they are. A
card whose UID is random (the privacy option) is refused at enrolment: a door
finds a card's keys by the UID it shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import CardAuthError, ProtocolError
from . import ev2
from .ntag424 import FOREIGN, Send, _native, _secure, authenticate, get_card_uid, holds_key

AID = bytes.fromhex("55CEAC")         # 0xACCE55, least significant byte first
PICC_AID = b"\x00\x00\x00"
MASTER_KEY_NO = 0
DOOR_KEY_NO = 1
KEY_VERSION = 1
# CreateApplication: key settings 1 (master key changeable, directory listable,
# create/delete with the master key, settings changeable), key settings 2 (AES, 2 keys)
KEY_SETTINGS = bytes([0x0B, 0x80 | 2])
SYSTEM = b"accessd:desfire:k%d"
HW_EV2 = 0x12                         # GetVersion hardware major version: EV2 0x12, EV3 0x30


@dataclass(frozen=True)
class DesfireKeys:
    door: bytes = field(repr=False)
    master: bytes | None = field(default=None, repr=False)

    def to_hex(self) -> str:
        """The door's part, for its sealed whitelist row."""
        return self.door.hex()

    @classmethod
    def from_hex(cls, text: str) -> "DesfireKeys":
        raw = bytes.fromhex(text)
        if len(raw) != 16:
            raise ValueError("a DESFire card's door key is 16 bytes")
        return cls(raw)


def card_keys(card_master: bytes, uid: bytes) -> DesfireKeys:
    k = [ev2.diversify_aes128(card_master, uid, AID, SYSTEM % n) for n in range(2)]
    return DesfireKeys(door=k[DOOR_KEY_NO], master=k[MASTER_KEY_NO])


def select(send: Send, aid: bytes) -> None:
    _native(send, ev2.native_apdu(0x5A, aid), "select application")


def get_version(send: Send) -> dict:
    """GetVersion's three frames: hardware type and version, and the UID."""
    _, hw = _native(send, ev2.native_apdu(0x60), "get version", expect=0xAF)
    _, sw = _native(send, ev2.native_apdu(0xAF), "get version", expect=0xAF)
    _, prod = _native(send, ev2.native_apdu(0xAF), "get version")
    if len(hw) != 7 or len(sw) != 7 or len(prod) < 14:
        raise ProtocolError("get version: frames of the wrong length")
    return {"type": hw[1], "major": hw[3], "uid": prod[:7]}


def verify(send: Send, uid: bytes, keys: DesfireKeys, *, rnd=os.urandom) -> None:
    """The door's check of one tap (module docstring); CardAuthError if it fails."""
    select(send, AID)
    ch = authenticate(send, DOOR_KEY_NO, keys.door, rnd=rnd)
    if get_card_uid(send, ch) != uid:
        raise CardAuthError("the card's authenticated UID is not the UID it showed "
                            "(a relay or an emulated card)")


def personalise(send: Send, uid: bytes, keys: DesfireKeys, *,
                factory_key: bytes = bytes(16), rnd=os.urandom) -> None:
    """The site's application created on a DESFire EV2/EV3 and its keys set to the
    card's own. CardAuthError if the card is not one, has a random UID, or already
    holds the application (this site's or another's)."""
    select(send, PICC_AID)
    v = get_version(send)
    if v["type"] != 0x01 or v["major"] < HW_EV2:
        raise CardAuthError("not a MIFARE DESFire EV2 or EV3 (hardware "
                            f"{v['type']:02X}/{v['major']:02X}): EV2 authentication is needed")
    if v["uid"] != uid:
        raise CardAuthError("the card shows a random UID: turn that option off, or use "
                            "another card (doors find a card's keys by its UID)")
    try:
        select(send, AID)
    except CardAuthError:
        pass
    else:
        raise CardAuthError("the card already holds an accessd application (enrolled, or "
                            "another site's card): see 'accessctl card check'")
    _native(send, ev2.native_apdu(0xCA, AID + KEY_SETTINGS), "create application")
    select(send, AID)
    ch = authenticate(send, MASTER_KEY_NO, factory_key, rnd=rnd)
    plain = ev2.change_key_data(DOOR_KEY_NO, MASTER_KEY_NO, keys.door, factory_key, KEY_VERSION)
    _secure(send, ch, ch.wrap_full(0xC4, bytes([DOOR_KEY_NO]), plain), "change key 1")
    plain = ev2.change_key_data(MASTER_KEY_NO, MASTER_KEY_NO, keys.master, None, KEY_VERSION)
    _native(send, ch.wrap_full(0xC4, bytes([MASTER_KEY_NO]), plain), "change key 0")


def state(send: Send, uid: bytes, keys: DesfireKeys | None, *, rnd=os.urandom) -> dict:
    """What `accessctl card check` reports for a DESFire card."""
    try:
        select(send, AID)
    except CardAuthError:
        return {"state": "blank", "detail": "no accessd application yet: ready to enrol"}
    if not holds_key(send, MASTER_KEY_NO, keys and keys.master, rnd=rnd):
        return {"state": "foreign", "detail": FOREIGN}
    verify(send, uid, keys, rnd=rnd)
    return {"state": "enrolled", "detail": "this site's application; the door key checks out"}
