"""NXP EV2 card cryptography, pure (bytes in, bytes out): the pieces an NTAG 424 DNA
or a MIFARE DESFire EV2/EV3 card and its reader compute, with no I/O.

- AES-128 key diversification (NXP AN10922 section 2.2): a card's own key from a
  site master key and the card's UID (plus application id and system identifier),
  so one card's key opens no other card.
- AuthenticateEV2First with AES-128 (NXP AN12196 section 5 / NT4H2421Gx data sheet
  9.1.5): the reader's second message from the card's encrypted RndB, then the card's
  answer checked (it must hold the key: RndA comes back rotated) and the session
  keys derived (SV1/SV2 through AES-CMAC).
- The truncated MAC of secure messaging (MACt: the odd bytes of the AES-CMAC), and
  secure messaging itself (`Channel`): CommMode.MAC and CommMode.Full commands and
  responses, both the reader's side and the card's, with the command counter.
- ChangeKey's command data (the new key XOR the old one, its version and NXP's CRC32).
- NTAG 424 DNA Secure Unique NFC (SUN/SDM, AN12196 section 3.4): the encrypted
  PICCData (UID and read counter) opened with the SDM meta-read key, and the SDMMAC
  checked with a session key derived from the SDM file-read key, the UID and counter.

Every function is checked byte for byte against the worked examples the application
notes publish (tests/test_ev2_vectors.py). The APDU exchange and the card emulator
that use them are separate modules.
"""

from __future__ import annotations

import hmac
import zlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import CardAuthError

BLOCK = 16
_IV0 = bytes(BLOCK)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _cbc(key: bytes, data: bytes, *, decrypt: bool, iv: bytes = _IV0) -> bytes:
    if len(data) % BLOCK:
        raise CardAuthError(f"{len(data)} bytes is not a whole number of AES blocks")
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def _check_key(key: bytes) -> None:
    if len(key) != 16:
        raise ValueError(f"an AES-128 key is 16 bytes, got {len(key)}")


def diversify_aes128(master: bytes, uid: bytes, aid: bytes = b"", system: bytes = b"") -> bytes:
    """AN10922 AES-128 diversification: AES-CMAC(master, 0x01 || UID || AID || system).
    (The note's padding 80 00.. with subkey K2 for a short input, K1 for a whole
    32-byte one, is exactly CMAC's own.) The diversification input is 1-31 bytes."""
    _check_key(master)
    m = uid + aid + system
    if not uid or len(m) > 31:
        raise ValueError(f"diversification input must be 1-31 bytes with a UID, got {len(m)}")
    return aes_cmac(master, b"\x01" + m)


def _rotl(b: bytes) -> bytes:
    return b[1:] + b[:1]


def ev2_first_reply(key: bytes, enc_rndb: bytes, rnd_a: bytes) -> tuple[bytes, bytes]:
    """AuthenticateEV2First part 2, the reader's side: from the card's encrypted RndB
    (16 bytes), (E(key, RndA || RndB<<8) to send, RndB)."""
    _check_key(key)
    if len(enc_rndb) != BLOCK or len(rnd_a) != BLOCK:
        raise CardAuthError(f"the card's challenge is {len(enc_rndb)} bytes, not 16")
    rnd_b = _cbc(key, enc_rndb, decrypt=True)
    return _cbc(key, rnd_a + _rotl(rnd_b), decrypt=False), rnd_b


@dataclass(frozen=True)
class Session:
    """An authenticated EV2 session (its keys never in repr or a log)."""
    ti: bytes                          # transaction identifier (4 bytes)
    key_no: int
    enc_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)
    pd_cap2: bytes = b""
    pcd_cap2: bytes = b""
    cmd_counter: int = 0


def session_vectors(rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    """SV1 (encryption) and SV2 (MAC): label || 00 01 00 80 || RndA[0:2] ||
    (RndA[2:8] xor RndB[0:6]) || RndB[6:16] || RndA[8:16]."""
    mix = bytes(a ^ b for a, b in zip(rnd_a[2:8], rnd_b[0:6]))
    body = b"\x00\x01\x00\x80" + rnd_a[0:2] + mix + rnd_b[6:16] + rnd_a[8:16]
    return b"\xa5\x5a" + body, b"\x5a\xa5" + body


def ev2_first_finish(key: bytes, key_no: int, rnd_a: bytes, rnd_b: bytes,
                     answer: bytes) -> Session:
    """AuthenticateEV2First, the card's last answer (32 bytes, status word removed):
    E(key, TI || RndA<<8 || PDcap2 || PCDcap2). Refused unless it carries our RndA
    rotated, which only a card holding the key can produce."""
    _check_key(key)
    if len(answer) != 2 * BLOCK:
        raise CardAuthError(f"the card's answer is {len(answer)} bytes, not 32")
    plain = _cbc(key, answer, decrypt=True)
    ti, rnd_a2, pd_cap2, pcd_cap2 = plain[0:4], plain[4:20], plain[20:26], plain[26:32]
    if not hmac.compare_digest(rnd_a2, _rotl(rnd_a)):
        raise CardAuthError("the card did not prove it holds the key (RndA mismatch)")
    sv1, sv2 = session_vectors(rnd_a, rnd_b)
    return Session(ti, key_no, aes_cmac(key, sv1), aes_cmac(key, sv2), pd_cap2, pcd_cap2)


def mac_t(mac_key: bytes, data: bytes) -> bytes:
    """Secure messaging's 8-byte MAC: bytes 1, 3, 5 … 15 of AES-CMAC(mac_key, data)."""
    return aes_cmac(mac_key, data)[1::2]


@dataclass(frozen=True)
class Sun:
    """What a verified SUN message says: the card's UID (never in repr or a log) and
    its read counter."""
    uid: bytes = field(repr=False)
    counter: int


def sun_picc(meta_key: bytes, enc_picc: bytes) -> Sun:
    """Open encrypted PICCData: AES-CBC(IV 0) to PICCDataTag || UID || SDMReadCtr
    (3 bytes, least significant first) || padding."""
    _check_key(meta_key)
    if len(enc_picc) != BLOCK:
        raise CardAuthError(f"PICCData is {len(enc_picc)} bytes, not 16")
    plain = _cbc(meta_key, enc_picc, decrypt=True)
    tag = plain[0]
    uid_len = tag & 0x0F
    if not tag & 0x80 or uid_len != 7 or not tag & 0x40:
        raise CardAuthError(f"PICCData tag {tag:02X}: not a 7-byte UID with a counter "
                            "(wrong SDM meta-read key?)")
    return Sun(plain[1:8], int.from_bytes(plain[8:11], "little"))


def sdm_mac(file_key: bytes, sun: Sun, mac_input: bytes = b"") -> bytes:
    """The SDMMAC over mac_input (the mirrored text before the MAC; empty when the MAC
    input starts at the MAC), under the session key CMAC(file_key, SV2) with
    SV2 = 3C C3 00 01 00 80 || UID || SDMReadCtr."""
    _check_key(file_key)
    sv2 = b"\x3c\xc3\x00\x01\x00\x80" + sun.uid + sun.counter.to_bytes(3, "little")
    return mac_t(aes_cmac(file_key, sv2), mac_input)


def sun_verify(meta_key: bytes, file_key: bytes, enc_picc: bytes, mac: bytes,
               mac_input: bytes = b"") -> Sun:
    """A SUN message checked: its UID and counter, or CardAuthError (a forged, altered
    or foreign message). The caller refuses a counter not above the last it saw."""
    sun = sun_picc(meta_key, enc_picc)
    if len(mac) != 8 or not hmac.compare_digest(sdm_mac(file_key, sun, mac_input), mac):
        raise CardAuthError("the SUN message's MAC does not match (forged, altered, or "
                            "another site's card)")
    return sun


# ---- secure messaging ----------------------------------------------------------------

def pad_m2(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2: 80 then zeros to a whole block (always added)."""
    return data + b"\x80" + bytes(-(len(data) + 1) % BLOCK)


def unpad_m2(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    if not stripped.endswith(b"\x80") or len(data) - len(stripped) >= BLOCK:
        raise CardAuthError("decrypted data is not padded as it should be (wrong session?)")
    return stripped[:-1]


def crc32_nk(data: bytes) -> bytes:
    """NXP's CRC32 for ChangeKey: IEEE 802.3 without the final complement, LSB first."""
    return ((~zlib.crc32(data)) & 0xFFFFFFFF).to_bytes(4, "little")


def change_key_data(key_no: int, auth_key_no: int, new: bytes, old: bytes | None,
                    version: int) -> bytes:
    """ChangeKey's plain command data: for the key authenticated with, the new key and
    its version; for another key, (new XOR old) || version || CRC32NK(new)."""
    _check_key(new)
    if key_no == auth_key_no:
        return new + bytes([version])
    if old is None:
        raise ValueError("changing a key other than the authenticated one needs its old value")
    _check_key(old)
    return bytes(a ^ b for a, b in zip(new, old)) + bytes([version]) + crc32_nk(new)


def native_apdu(cmd: int, data: bytes = b"") -> bytes:
    """A native command wrapped in ISO 7816-4: 90 cmd 00 00 [Lc data] 00."""
    return bytes([0x90, cmd, 0, 0]) + (bytes([len(data)]) + data if data else b"") + b"\x00"


class Channel:
    """Secure messaging over an authenticated session, as both ends compute it.

    Every command and its response advance the command counter by one. A reader
    wraps commands (`wrap_mac`, `wrap_full`) and opens responses (`open_response`);
    an emulated card checks commands (`open_command`) and seals its answers
    (`seal_response`). A failed check raises CardAuthError and does not advance
    the counter.
    """

    def __init__(self, session: Session, counter: int = 0):
        self.session = session
        self.counter = counter

    def _iv(self, label: bytes, counter: int) -> bytes:
        block = label + self.session.ti + counter.to_bytes(2, "little") + bytes(8)
        return _cbc(self.session.enc_key, block, decrypt=False)

    def iv_cmd(self) -> bytes:
        return self._iv(b"\xa5\x5a", self.counter)

    def iv_resp(self) -> bytes:
        return self._iv(b"\x5a\xa5", self.counter + 1)

    def _cmd_mac(self, cmd: int, body: bytes) -> bytes:
        return mac_t(self.session.mac_key, bytes([cmd]) + self.counter.to_bytes(2, "little")
                     + self.session.ti + body)

    def _resp_mac(self, status: int, body: bytes) -> bytes:
        return mac_t(self.session.mac_key, bytes([status]) +
                     (self.counter + 1).to_bytes(2, "little") + self.session.ti + body)

    # reader side
    def wrap_mac(self, cmd: int, header: bytes = b"", data: bytes = b"") -> bytes:
        return native_apdu(cmd, header + data + self._cmd_mac(cmd, header + data))

    def wrap_full(self, cmd: int, header: bytes = b"", data: bytes = b"") -> bytes:
        enc = (_cbc(self.session.enc_key, pad_m2(data), decrypt=False, iv=self.iv_cmd())
               if data else b"")
        return native_apdu(cmd, header + enc + self._cmd_mac(cmd, header + enc))

    def open_response(self, status: int, body: bytes, *, full: bool = False) -> bytes:
        """A response (data and MAC, status word removed) checked: its plain data."""
        if len(body) < 8:
            raise CardAuthError(f"the card's answer is {len(body)} bytes, too short for its MAC")
        data, mac = body[:-8], body[-8:]
        if not hmac.compare_digest(self._resp_mac(status, data), mac):
            raise CardAuthError("the card's answer has a wrong MAC (altered or another session)")
        if full and data:
            data = unpad_m2(_cbc(self.session.enc_key, data, decrypt=True, iv=self.iv_resp()))
        self.counter += 1
        return data

    # card side
    def open_command(self, cmd: int, body: bytes, header_len: int, *,
                     full: bool = False) -> tuple[bytes, bytes]:
        """A command's (header, plain data), its MAC checked."""
        if len(body) < header_len + 8:
            raise CardAuthError("command too short for its MAC")
        payload, mac = body[:-8], body[-8:]
        if not hmac.compare_digest(self._cmd_mac(cmd, payload), mac):
            raise CardAuthError("command MAC does not match")
        header, data = payload[:header_len], payload[header_len:]
        if full and data:
            data = unpad_m2(_cbc(self.session.enc_key, data, decrypt=True, iv=self.iv_cmd()))
        return header, data

    def seal_response(self, status: int, data: bytes = b"", *, full: bool = False) -> bytes:
        """The card's answer (data || MAC) to the command just opened; advances the counter."""
        if full and data:
            data = _cbc(self.session.enc_key, pad_m2(data), decrypt=False, iv=self.iv_resp())
        out = data + self._resp_mac(status, data)
        self.counter += 1
        return out


# ---- the card's side (the emulated cards of accessd.protocols.cards) -----------------

def card_challenge(key: bytes, rnd_b: bytes) -> bytes:
    """AuthenticateEV2First part 1 as the card sends it: E(key, RndB)."""
    _check_key(key)
    return _cbc(key, rnd_b, decrypt=False)


def card_answer(key: bytes, key_no: int, rnd_b: bytes, part2: bytes, ti: bytes,
                caps: bytes = bytes(12)) -> tuple[bytes, Session]:
    """The card's check of the reader's part 2 (it must hold the key: RndB comes back
    rotated) and its answer E(key, TI || RndA<<8 || PDcap2 || PCDcap2), with the
    session both sides now share."""
    _check_key(key)
    if len(part2) != 2 * BLOCK:
        raise CardAuthError(f"the reader's part 2 is {len(part2)} bytes, not 32")
    plain = _cbc(key, part2, decrypt=True)
    rnd_a, rnd_b2 = plain[:BLOCK], plain[BLOCK:]
    if not hmac.compare_digest(rnd_b2, _rotl(rnd_b)):
        raise CardAuthError("the reader does not hold the key (RndB mismatch)")
    answer = _cbc(key, ti + _rotl(rnd_a) + caps, decrypt=False)
    sv1, sv2 = session_vectors(rnd_a, rnd_b)
    return answer, Session(ti, key_no, aes_cmac(key, sv1), aes_cmac(key, sv2),
                           caps[:6], caps[6:])


def sun_encrypt_picc(meta_key: bytes, uid: bytes, counter: int, fill: bytes = bytes(5)) -> bytes:
    """The card's encrypted PICCData (the inverse of `sun_picc`)."""
    _check_key(meta_key)
    if len(uid) != 7 or not 0 <= counter < 1 << 24:
        raise ValueError("PICCData carries a 7-byte UID and a 24-bit counter")
    return _cbc(meta_key, b"\xc7" + uid + counter.to_bytes(3, "little") + fill, decrypt=False)
