"""A contactless card on nfcpy's udp link, for simulation and tests.

The card side of nfcpy's software RF link (`udp:HOST:PORT`): the door's
NfcReader senses it through the unchanged nfcpy reader code. Cards:

| kind   | what the reader sees                         | held                  |
|--------|----------------------------------------------|-----------------------|
| type2  | ISO 14443A, SAK 0x00, 4- or 7-byte UID, READ | answers READ commands |
| type4  | ISO 14443A ISO-DEP, SAK 0x20: RATS/ATS, APDUs| answers I/R/S blocks  |
|        | with `applet`: an emulated secure card        | (protocols/cards.py)  |
| felica | FeliCa 212 kbps, 8-byte IDm                  | nfcpy Type3 emulation |

`present()` keeps the card in the field for `hold` seconds, answering the
reader's presence checks, then takes it away. A type4 card's APDUs go to its
`applet` (an NTAG 424 DNA of protocols/cards.py, say); without one every APDU is
answered "file not found". An applet raising CardRemoved takes the card away at
once, mid-exchange.
"""

from __future__ import annotations

import threading
import time

import nfc
import nfc.clf
from nfc.clf import LocalTarget

ATS = bytes.fromhex("0578807002")
SW_NOT_FOUND = b"\x6a\x82"


def _sens_res(uid: bytes) -> bytes:
    return {4: b"\x04\x00", 7: b"\x44\x00", 10: b"\x84\x00"}[len(uid)]


class CardEmulator:
    def __init__(self, path: str):
        self.path = path

    def present(self, uid: bytes, *, kind: str = "type2", hold: float = 0.5,
                timeout: float = 5.0, applet=None) -> bool:
        """Hold a card in the field; return True if a reader activated it."""
        clf = nfc.ContactlessFrontend(self.path)
        try:
            if kind == "felica":
                return self._felica(clf, uid, hold, timeout)
            target = LocalTarget("106A")
            target.sens_res = _sens_res(uid)
            target.sdd_res = uid
            target.sel_res = b"\x20" if kind == "type4" else b"\x00"
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                activated = clf.listen(target, min(1.0, deadline - time.monotonic()))
                if activated is None:
                    continue
                cmd = activated.tt2_cmd if kind == "type2" else activated.tt4_cmd
                self._answer(clf, kind, target, cmd, time.monotonic() + hold, activated._addr,
                             applet)
                return True
            return False
        finally:
            clf.close()

    @staticmethod
    def _anticollision(target) -> dict[bytes, bytes]:
        """Request -> response for re-selection (a reader re-selects a card that did
        not answer an optional command, as NXP cards do)."""
        uid = bytes(target.sdd_res)
        levels = [uid] if len(uid) == 4 else ([b"\x88" + uid[:3], uid[3:]] if len(uid) == 7 else
                                             [b"\x88" + uid[:3], b"\x88" + uid[3:6], uid[6:]])
        table = {b"\x26": target.sens_res, b"\x52": target.sens_res}
        for i, (part, sel) in enumerate(zip(levels, b"\x93\x95\x97")):
            bcc = part[0] ^ part[1] ^ part[2] ^ part[3]
            last = i == len(levels) - 1
            table[bytes([sel, 0x20])] = part + bytes([bcc])
            table[bytes([sel, 0x70]) + part + bytes([bcc])] = (
                bytes([target.sel_res[0] & 0xFB]) if last else b"\x04")
        return table

    @classmethod
    def _answer(cls, clf, kind: str, target, cmd, until: float, addr, applet=None) -> None:
        """Answer the reader's commands until `until`, then go silent (card removed).

        Each answer goes to the address its command came from: a reader that
        re-selects the card (as nfcpy does after an NXP probe goes unanswered)
        does so from a new socket. nfcpy's public exchange() answers the address
        of the first activation, so this loop uses the udp driver's datagram
        helpers (stable: nfcpy 1.0.4 is its last release).
        """
        from ..protocols.cards import CardRemoved
        dev = clf.device
        reselect = cls._anticollision(target)
        chained = b""
        while cmd is not None and time.monotonic() < until:
            cmd = bytes(cmd)
            rsp = None
            if not cmd:
                pass                                  # nothing heard: keep listening
            elif cmd in reselect:
                rsp = reselect[cmd]
            elif kind == "type2":
                if cmd[0] == 0x30:                   # READ: 4 pages of zeros (no NDEF)
                    rsp = bytes(16)
            elif cmd[0] == 0xE0:                      # RATS
                rsp = ATS
            elif cmd[0] & 0xE2 == 0x02 and cmd[0] & 0x10:   # chained I-block: ACK
                chained += cmd[1:]
                rsp = bytes([0xA2 | (cmd[0] & 1)])
            elif cmd[0] & 0xE2 == 0x02:               # I-block: an APDU
                apdu, chained = chained + cmd[1:], b""
                if applet is None:
                    rsp = bytes([cmd[0]]) + SW_NOT_FOUND
                else:
                    try:
                        rsp = bytes([cmd[0] & 0x03 | 0x02]) + applet(apdu)
                    except CardRemoved:
                        return                        # gone: the reader hears nothing more
            elif cmd[0] & 0xE6 == 0xA2:               # R-block: acknowledge
                rsp = bytes([0xA2 | (cmd[0] & 1)])
            elif cmd[0] & 0xF7 == 0xC2:               # S(DESELECT)
                rsp = bytes([cmd[0]])
            if rsp is not None:
                dev._send_data(target.brty, rsp, addr)
            try:
                _, cmd, addr = dev._recv_data(max(0.05, min(0.5, until - time.monotonic())),
                                              target.brty)
            except nfc.clf.CommunicationError:
                # a timeout, or the reader switched its field off (RFOFF): a card still
                # in the field resets and answers the next REQA
                cmd = b"" if time.monotonic() < until else None

    @staticmethod
    def _felica(clf, idm: bytes, hold: float, timeout: float) -> bool:
        pmm = bytes.fromhex("03014b024f4993ff")
        activated = threading.Event()
        until = [None]

        def on_startup(target):
            target.brty = "212F"
            target.sensf_res = b"\x01" + idm + pmm + b"\x12\xfc"
            return target

        def on_connect(tag):
            activated.set()
            until[0] = time.monotonic() + hold
            return True

        started = time.monotonic()

        def terminate():
            if until[0] is not None:
                return time.monotonic() >= until[0]
            return time.monotonic() >= started + timeout

        clf.connect(card={"on-startup": on_startup, "on-connect": on_connect,
                          "timeout": 0.5}, terminate=terminate)
        return activated.is_set()
