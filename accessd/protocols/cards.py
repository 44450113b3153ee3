"""Emulated secure cards, for tests and simulation: APDU in, APDU out, no I/O.

`Ntag424Card` answers as an NTAG 424 DNA does (NT4H2421Gx data sheet, AN12196):
ISOSelectFile, ISOReadBinary/ISOUpdateBinary on the NDEF file with Secure Dynamic
Messaging (the UID and read counter mirrored into the file, encrypted, with a MAC,
the counter one up on each read), AuthenticateEV2First, GetCardUID,
ChangeFileSettings and ChangeKey under secure messaging. It starts blank, as NXP
ships it: five AES keys of zeros, an NDEF file anyone may write.

`DesfireCard` answers as a MIFARE DESFire EV2/EV3 does (its class docstring).

The faults a test needs: a card holding other keys (another site's, or a cloned
UID written onto a blank card), `ReplayCard` (answers recorded from a genuine card's
earlier session, replayed), and `pull_after` (the card leaves the field after that
many commands: `CardRemoved`, the transport then goes silent).

nfc_emulator.CardEmulator carries these over nfcpy's udp link, so the door's real
nfcpy reader code talks to them.
"""

from __future__ import annotations

import os

from ..errors import CardAuthError
from . import ev2
from .ntag424 import NDEF_APP, NDEF_FILE_ID

OK = b"\x90\x00"
NOT_FOUND = b"\x6a\x82"
DENIED = b"\x69\x82"
WRONG_LENGTH = b"\x67\x00"
FREE = 0xE


class CardRemoved(Exception):
    """The emulated card has left the field: no answer to this command."""


def _native(status: int) -> bytes:
    return bytes([0x91, status])


class _Ev2Card:
    """What both cards share: the APDU entry (ISO or wrapped native commands, a card
    pulled from the field), AuthenticateEV2First, GetCardUID and ChangeKey on the
    keys of `keys` (the selected application's)."""

    keys: list[bytes]
    key_versions: list[int]

    def __init__(self, uid: bytes, *, pull_after: int | None, rnd):
        self.uid = uid
        self.pull_after = pull_after
        self.commands = 0
        self._rnd = rnd
        self.channel: ev2.Channel | None = None
        self._pending: tuple[int, bytes] | None = None

    def apdu(self, c: bytes) -> bytes:
        self.commands += 1
        if self.pull_after is not None and self.commands > self.pull_after:
            raise CardRemoved
        if len(c) < 4:
            return WRONG_LENGTH
        cla, ins = c[0], c[1]
        data = c[5:5 + c[4]] if len(c) > 5 else b""
        if cla == 0x00:
            return self._iso(ins, c[2], c[3], data, c)
        if cla == 0x90:
            try:
                return self._command(ins, data)
            except CardAuthError:
                self.channel = None   # an integrity failure ends the session
                return _native(0x1E)
        return b"\x6e\x00"

    def _iso(self, ins: int, p1: int, p2: int, data: bytes, c: bytes) -> bytes:
        return NOT_FOUND

    def _command(self, ins: int, data: bytes) -> bytes:
        raise NotImplementedError

    def _ev2(self, ins: int, data: bytes) -> bytes | None:
        """The EV2 commands on the selected keys; None for any other command."""
        if ins == 0x71:
            key_no = data[0] if data else 0xFF
            if key_no >= len(self.keys):
                return _native(0x40)
            self.channel = None
            rnd_b = self._rnd(16)
            self._pending = (key_no, rnd_b)
            return ev2.card_challenge(self.keys[key_no], rnd_b) + _native(0xAF)
        if ins == 0xAF and self._pending is not None:
            key_no, rnd_b = self._pending
            self._pending = None
            try:
                answer, session = ev2.card_answer(self.keys[key_no], key_no, rnd_b, data,
                                                  self._rnd(4))
            except CardAuthError:
                return _native(0xAE)
            self.channel = ev2.Channel(session)
            return answer + _native(0x00)
        if ins not in (0x51, 0xC4):
            return None
        ch = self.channel
        if ch is None:
            return _native(0xAE)
        if ins == 0x51:
            ch.open_command(0x51, data, 0)
            return ch.seal_response(0x00, self.uid, full=True) + _native(0x00)
        header, body = ch.open_command(0xC4, data, 1, full=True)
        key_no = header[0]
        if ch.session.key_no != 0 or key_no >= len(self.keys):
            return _native(0x9D)
        if key_no == ch.session.key_no:
            self.keys[key_no], self.key_versions[key_no] = body[:16], body[16]
            self.channel = None     # the session's key is gone
            return _native(0x00)
        new = bytes(a ^ b for a, b in zip(body[:16], self.keys[key_no]))
        if ev2.crc32_nk(new) != body[17:21]:
            return _native(0x1E)
        self.keys[key_no], self.key_versions[key_no] = new, body[16]
        return ch.seal_response(0x00) + _native(0x00)


class Ntag424Card(_Ev2Card):
    def __init__(self, uid: bytes, keys: list[bytes] | None = None, *,
                 pull_after: int | None = None, rnd=os.urandom):
        if len(uid) != 7:
            raise ValueError("an NTAG 424 DNA has a 7-byte UID")
        super().__init__(uid, pull_after=pull_after, rnd=rnd)
        self.keys = list(keys) if keys else [bytes(16)] * 5
        self.key_versions = [0] * 5
        self.ndef = bytearray(256)
        self.access = {"read": FREE, "write": FREE, "rw": FREE, "change": 0}
        self.sdm: dict | None = None
        self.counter = 0
        self._reset()

    def _reset(self) -> None:
        self.app = False
        self.file: bytes | None = None
        self.channel = None
        self._pending = None

    # ---- the card's answers ------------------------------------------------------
    def _iso(self, ins: int, p1: int, p2: int, data: bytes, c: bytes) -> bytes:
        if ins == 0xA4:
            if p1 == 0x04:
                if data != NDEF_APP:
                    return NOT_FOUND
                self._reset()
                self.app = True
                return OK
            if self.app and data == NDEF_FILE_ID:
                self.file = data
                return OK
            return NOT_FOUND
        if ins == 0xB0:
            if self.file != NDEF_FILE_ID:
                return DENIED
            if self.access["read"] != FREE:
                return DENIED
            offset = p1 << 8 | p2
            le = c[4] if len(c) == 5 else 0
            content = self._mirrored()
            return content[offset:offset + (le or 256)] + OK
        if ins == 0xD6:
            if self.file != NDEF_FILE_ID or self.access["write"] != FREE:
                return DENIED
            offset = p1 << 8 | p2
            if offset + len(data) > len(self.ndef):
                return WRONG_LENGTH
            self.ndef[offset:offset + len(data)] = data
            return OK
        return b"\x6d\x00"

    def _mirrored(self) -> bytes:
        """The NDEF file as a reader reads it: with SDM on, the counter one up and the
        encrypted PICCData and MAC written into it."""
        out = bytearray(self.ndef)
        s = self.sdm
        if s is None:
            return bytes(out)
        self.counter += 1
        picc = ev2.sun_encrypt_picc(self.keys[s["meta"]], self.uid, self.counter,
                                    self._rnd(5))
        out[s["e_at"]:s["e_at"] + 32] = picc.hex().upper().encode()
        mac_input = bytes(out[s["mac_in_at"]:s["c_at"]])
        mac = ev2.sdm_mac(self.keys[s["file"]], ev2.Sun(self.uid, self.counter), mac_input)
        out[s["c_at"]:s["c_at"] + 16] = mac.hex().upper().encode()
        return bytes(out)

    def _command(self, ins: int, data: bytes) -> bytes:
        if not self.app:
            return _native(0x9D)
        answer = self._ev2(ins, data)
        if answer is not None:
            return answer
        if ins == 0xAF:
            return _native(0xCA)
        ch = self.channel
        if ch is None:
            return _native(0xAE)
        if ins == 0x5F:
            header, settings = ch.open_command(0x5F, data, 1, full=True)
            if ch.session.key_no != self.access["change"] or header != b"\x02":
                return _native(0x9D)
            self._file_settings(settings)
            return ch.seal_response(0x00) + _native(0x00)
        return _native(0x1C)

    # ---- a simulated card kept in a file (accessctl sim card) ---------------------------
    def image(self) -> dict:
        """The card's whole state (its keys too, as a real card's chip holds them)."""
        return {"type": "ntag424", "uid": self.uid.hex().upper(),
                "keys": [k.hex() for k in self.keys], "key_versions": self.key_versions,
                "ndef": bytes(self.ndef).hex(), "access": self.access, "sdm": self.sdm,
                "counter": self.counter}

    @classmethod
    def from_image(cls, doc) -> "Ntag424Card":
        """A card from image(); ValueError naming the field that is wrong."""
        if not isinstance(doc, dict) or doc.get("type") != "ntag424":
            raise ValueError("not a simulated NTAG 424 DNA card image (type must be ntag424)")
        try:
            card = cls(bytes.fromhex(doc["uid"]), [bytes.fromhex(k) for k in doc["keys"]])
            if len(card.keys) != 5 or any(len(k) != 16 for k in card.keys):
                raise ValueError("five 16-byte keys")
            card.key_versions = [int(v) for v in doc["key_versions"]]
            ndef = bytes.fromhex(doc["ndef"])
            if len(ndef) != 256:
                raise ValueError("a 256-byte NDEF file")
            card.ndef = bytearray(ndef)
            card.access = {k: int(doc["access"][k]) for k in ("read", "write", "rw", "change")}
            sdm = doc["sdm"]
            card.sdm = None if sdm is None else {
                k: int(sdm[k]) for k in ("meta", "file", "e_at", "mac_in_at", "c_at")}
            card.counter = int(doc["counter"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"card image is damaged: {what}") from None
        return card

    def _file_settings(self, s: bytes) -> None:
        option, ar = s[0], s[1:3]
        self.access = {"rw": ar[0] >> 4, "change": ar[0] & 0xF, "read": ar[1] >> 4,
                       "write": ar[1] & 0xF}
        self.sdm = None
        if option & 0x40:
            sar = s[4:6]
            at = lambda i: int.from_bytes(s[i:i + 3], "little")  # noqa: E731
            self.sdm = {"meta": sar[1] >> 4, "file": sar[1] & 0xF, "e_at": at(6),
                        "mac_in_at": at(9), "c_at": at(12)}


class DesfireCard(_Ev2Card):
    """A MIFARE DESFire EV2/EV3 as NXP ships it (MF3D(H)x2/x3 data sheets): the PICC
    level (AID 000000) with its master key and free CreateApplication, GetVersion,
    SelectApplication, CreateApplication of AES applications, and in an application
    AuthenticateEV2First, GetCardUID and ChangeKey under EV2 secure messaging. No
    ISO DF names: an ISO SELECT finds nothing. `hw_major` 0x12 is an EV2, 0x30 an
    EV3, 0x01 an EV1 (which has no EV2 authentication)."""

    def __init__(self, uid: bytes, *, hw_major: int = 0x30, pull_after: int | None = None,
                 rnd=os.urandom):
        if len(uid) != 7:
            raise ValueError("a DESFire EV2/EV3 has a 7-byte UID")
        super().__init__(uid, pull_after=pull_after, rnd=rnd)
        self.hw_major = hw_major
        self.apps: dict[bytes, dict] = {}
        self.aid = b"\x00\x00\x00"
        self._version_frame = 0

    @property
    def keys(self) -> list[bytes]:
        return self.apps[self.aid]["keys"] if self.aid in self.apps else []

    @property
    def key_versions(self) -> list[int]:
        return self.apps[self.aid]["versions"] if self.aid in self.apps else []

    def _command(self, ins: int, data: bytes) -> bytes:
        if ins != 0xAF:
            self._version_frame = 0
        if ins == 0x5A:
            if len(data) != 3:
                return _native(0x7E)
            if data != b"\x00\x00\x00" and data not in self.apps:
                return _native(0xA0)          # application not found
            self.aid, self.channel, self._pending = data, None, None
            return _native(0x00)
        if ins == 0x60 or (ins == 0xAF and self._version_frame):
            return self._version()
        if ins == 0xCA:
            if self.aid != b"\x00\x00\x00" or len(data) < 5:
                return _native(0x9D if len(data) >= 5 else 0x7E)
            aid, settings1, settings2 = data[:3], data[3], data[4]
            if aid in self.apps:
                return _native(0xDE)          # duplicate
            if not settings2 & 0x80 or not 1 <= settings2 & 0x0F <= 14:
                return _native(0x9E)
            n = settings2 & 0x0F
            self.apps[aid] = {"keys": [bytes(16)] * n, "versions": [0] * n,
                              "settings": settings1}
            return _native(0x00)
        if self.aid == b"\x00\x00\x00" and ins in (0x71, 0x51, 0xC4):
            return _native(0x9D)   # the PICC master key is 2K3DES here: not this protocol
        answer = self._ev2(ins, data)
        return answer if answer is not None else _native(0x1C)

    def _version(self) -> bytes:
        self._version_frame += 1
        if self._version_frame == 1:      # hardware: vendor, type, subtype, major, minor...
            return bytes([0x04, 0x01, 0x01, self.hw_major, 0x00, 0x1A, 0x05]) + _native(0xAF)
        if self._version_frame == 2:      # software
            return bytes([0x04, 0x01, 0x01, self.hw_major, 0x00, 0x1A, 0x05]) + _native(0xAF)
        self._version_frame = 0           # production: UID, batch, week, year
        return self.uid + bytes(5) + b"\x26\x24" + _native(0x00)

    def image(self) -> dict:
        return {"type": "desfire", "uid": self.uid.hex().upper(), "hw_major": self.hw_major,
                "apps": {aid.hex(): {"keys": [k.hex() for k in a["keys"]],
                                     "versions": a["versions"], "settings": a["settings"]}
                         for aid, a in self.apps.items()}}

    @classmethod
    def from_image(cls, doc) -> "DesfireCard":
        if not isinstance(doc, dict) or doc.get("type") != "desfire":
            raise ValueError("not a simulated DESFire card image (type must be desfire)")
        try:
            card = cls(bytes.fromhex(doc["uid"]), hw_major=int(doc["hw_major"]))
            for aid, a in doc["apps"].items():
                keys = [bytes.fromhex(k) for k in a["keys"]]
                if len(bytes.fromhex(aid)) != 3 or any(len(k) != 16 for k in keys):
                    raise ValueError("an application of a 3-byte AID and 16-byte keys")
                card.apps[bytes.fromhex(aid)] = {"keys": keys,
                                                 "versions": [int(v) for v in a["versions"]],
                                                 "settings": int(a["settings"])}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"card image is damaged: {what}") from None
        return card


def card_from_image(doc):
    """An emulated secure card of either type from its image; ValueError if damaged."""
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "desfire":
        return DesfireCard.from_image(doc)
    if kind == "ntag424":
        return Ntag424Card.from_image(doc)
    raise ValueError("not a simulated secure card image (type must be ntag424 or desfire)")


class ReplayCard:
    """Plays back what a genuine card answered in an earlier session, command by
    command (an attacker's recording): the answers no longer fit a fresh challenge."""

    def __init__(self, transcript: list[tuple[bytes, bytes]]):
        self.answers = [rsp for _, rsp in transcript]
        self.i = 0

    def apdu(self, c: bytes) -> bytes:
        if self.i >= len(self.answers):
            return b"\x6f\x00"
        self.i += 1
        return self.answers[self.i - 1]


class Recorder:
    """Wraps a card and keeps every (command, answer): to make a ReplayCard."""

    def __init__(self, card):
        self.card = card
        self.transcript: list[tuple[bytes, bytes]] = []

    def apdu(self, c: bytes) -> bytes:
        rsp = self.card.apdu(c)
        self.transcript.append((bytes(c), rsp))
        return rsp
