"""Secure cards at the office: personalise a blank NTAG 424 DNA or MIFARE DESFire
EV2/EV3 on the office's NFC reader and read a card's state back (`accessctl enroll
--kind ntag424|desfire`, `accessctl card check`).

The reader is any nfcpy device (`usb`, `tty:USB0:pn532`, or `udp:HOST:PORT` with an
emulated card). The card's keys are diversified from the site's card master key
(site/keys.py) and its UID; the door keys go into the site database sealed, and
reach doors only inside their group's sealed bundle.
"""

from __future__ import annotations

import time
from typing import Callable

from ..errors import CardAuthError, HardwareError, ProtocolError
from ..protocols import desfire, ntag424

PROTOCOLS = {"ntag424": ntag424, "desfire": desfire}


def on_office_reader(path: str, timeout: float, fn: Callable) -> object:
    """Wait up to `timeout` s for an ISO-DEP card on the reader at `path` and return
    fn(send, uid) run while it is held there (send: the card's APDU exchange). HardwareError when no reader or card,
    or when the card leaves mid-way."""
    import nfc
    import nfc.tag
    clf = nfc.ContactlessFrontend()
    try:
        found = clf.open(path)
    except OSError as exc:
        raise HardwareError(f"cannot open the NFC reader at {path!r}: {exc}") from None
    if not found:
        raise HardwareError(f"no NFC reader found at {path!r}")
    result: dict = {}
    deadline = time.monotonic() + timeout

    def connected(tag) -> bool:
        uid = bytes(tag.identifier)
        if tag.type != "Type4Tag":
            result["error"] = CardAuthError(f"this is a {tag.type} card, not an NTAG 424 DNA "
                                            "or a DESFire")
            return False
        try:
            result["value"] = fn(tag.transceive, uid)
        except (ProtocolError, nfc.tag.TagCommandError) as exc:
            result["error"] = HardwareError(f"the card left or stopped answering: {exc}")
        except Exception as exc:  # noqa: BLE001 - handed to the caller as it was
            result["error"] = exc
        return False

    try:
        clf.connect(rdwr={"targets": ["106A"], "on-connect": connected, "iterations": 1,
                          "interval": 0.1, "beep-on-connect": False},
                    terminate=lambda: bool(result) or time.monotonic() > deadline)
    finally:
        clf.close()
    if "error" in result:
        raise result["error"]
    if "value" not in result:
        raise HardwareError("no card was presented in time")
    return result["value"]


def personalise(send: ntag424.Send, uid: bytes, card_master: bytes,
                check_free: Callable[[str], None], kind: str = "ntag424"):
    """Make the card on the reader this site's: (UID hex, its keys, what was done).
    check_free(uid_hex) raises if the UID cannot be enrolled (so a card already
    enrolled to someone is not touched). A card already personalised by this site
    (re-enrolment after a revocation) is taken as it is; another site's is refused."""
    value = uid.hex().upper()
    check_free(value)
    found = card_type(send)
    if found != kind:
        raise CardAuthError(f"this card is {'a DESFire' if found == 'desfire' else 'not a DESFire'}"
                            f": enrol it with --kind {found}")
    proto = PROTOCOLS[kind]
    keys = proto.card_keys(card_master, uid)
    st = proto.state(send, uid, keys)
    if st["state"] == "foreign":
        raise CardAuthError("this card's keys are not factory keys nor this site's "
                            "(another site's card?): it cannot be enrolled")
    if st["state"] == "blank":
        proto.personalise(send, uid, keys)
        proto.verify(send, uid, keys)     # read it back before it counts as enrolled
        return value, keys, "personalised"
    return value, keys, "already this site's"


def card_type(send: ntag424.Send) -> str:
    """desfire (GetVersion says so) or ntag424 (anything else ISO-DEP is tried as one)."""
    try:
        desfire.select(send, desfire.PICC_AID)
        if desfire.get_version(send)["type"] == 0x01:
            return "desfire"
    except (CardAuthError, ProtocolError):
        pass
    return "ntag424"


def check(send: ntag424.Send, uid: bytes, card_master: bytes | None) -> dict:
    """A card's type and state: blank, this site's (an NTAG's read counter), or foreign."""
    kind = card_type(send)
    proto = PROTOCOLS[kind]
    keys = proto.card_keys(card_master, uid) if card_master is not None else None
    return {"card": kind, **proto.state(send, uid, keys)}
