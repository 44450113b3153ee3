"""OSDP (IEC 60839-11-5) pieces the door needs beside libosdp: what a reader's
card and keypad reports mean, and a check of the frames coming up the line.

libosdp runs the protocol (polling, secure channel, retries) and silently drops
a frame whose CRC or checksum fails. `FrameChecker` watches the same bytes on
their way in, so such frames become reader.bad_frame records the staff see.

Frame (OSDP 2.2 §5.7): [0xFF mark] SOM 0x53, ADDR (bit 7 set in replies), LEN
(2 bytes LE, SOM to the end of the check), CTRL (bit 2: CRC-16, else an 8-bit
checksum), optional security block, code, data, optional 4-byte MAC, then the
check: CRC-16/AUG-CCITT (poly 0x1021, init 0x1D0F), least significant byte first,
or the two's complement of the byte sum.

Keypad reports (osdp_KEYPAD): digits as ASCII 0x30-0x39, '*' as DEL 0x7F, '#' as
CR 0x0D, function keys A-D as 0x41-0x44.
"""

from __future__ import annotations

import binascii

from ..core.credentials import reading_wiegand
from . import wiegand

SOM = 0x53
MARK = 0xFF
MIN_LEN = 7          # SOM, ADDR, LEN(2), CTRL, code, checksum
MAX_LEN = 1440       # larger than any reader reply; beyond this it is noise

KEY_CODES = {0x7F: "*", 0x0D: "#", **{0x30 + d: str(d) for d in range(10)},
             0x41: "A", 0x42: "B", 0x43: "C", 0x44: "D"}
UID_BITS = (32, 56, 80)   # 4-, 7- and 10-byte card serial numbers

CARD_FMT_RAW = 0
CARD_FMT_WIEGAND = 1
CARD_FMT_ASCII = 2


def crc16(data: bytes) -> int:
    """CRC-16/AUG-CCITT: binascii's CRC-CCITT (poly 0x1021) started at 0x1D0F."""
    return binascii.crc_hqx(data, 0x1D0F)


def checksum(data: bytes) -> int:
    return (-sum(data)) & 0xFF


class FrameChecker:
    """Feed it the bytes read from the line; it returns a reason for each frame whose
    check fails. Bytes between frames (line noise, a mark byte) are skipped."""

    def __init__(self):
        self._buf = bytearray()
        self._boundary = False   # the buffer starts where a frame must: after one, a mark

    def feed(self, data: bytes) -> list[str]:
        buf = self._buf
        buf.extend(data)
        bad = []
        while True:
            start = buf.find(SOM)
            if start < 0:
                self._boundary = bool(buf) and buf[-1] == MARK
                buf.clear()
                return bad
            framed = (self._boundary and start == 0) or (start > 0 and buf[start - 1] == MARK)
            del buf[:start]
            self._boundary = framed
            if len(buf) < 5:
                return bad
            length = buf[2] | buf[3] << 8
            if not MIN_LEN <= length <= MAX_LEN:
                if framed:   # where a frame begins: a bit error in its length
                    bad.append(f"OSDP frame from address {buf[1] & 0x7F} gives a length of "
                               f"{length} bytes (a frame is {MIN_LEN}-{MAX_LEN})")
                del buf[:1]            # (else noise that looked like a frame start)
                self._boundary = False
                continue
            if len(buf) < length:
                return bad
            frame = bytes(buf[:length])
            use_crc = frame[4] & 0x04
            if use_crc:
                ok = crc16(frame[:-2]) == (frame[-2] | frame[-1] << 8)
            else:
                ok = checksum(frame[:-1]) == frame[-1]
            if ok:
                del buf[:length]
                self._boundary = True
            else:
                bad.append(f"OSDP frame from address {frame[1] & 0x7F} fails its "
                           f"{'CRC' if use_crc else 'checksum'} ({length} bytes)")
                del buf[:1]            # resynchronise on the next SOM
                self._boundary = False


def bits_of(data: bytes, length: int) -> list[int]:
    return [(data[i // 8] >> (7 - i % 8)) & 1 for i in range(length)]


def card_reading(fmt: int, length: int, data: bytes,
                 raw_lengths: tuple[int, ...] = ()) -> tuple[str, str] | str:
    """What a card report means: (kind, canonical value), or why it is not a credential.

    Raw reports of 32, 56 or 80 bits are a card's serial number (UID): kind "nfc",
    as an NFC reader gives it. Other raw reports and Wiegand-format reports are a
    Wiegand frame with its parity, read exactly as on a Wiegand reader's wires."""
    if fmt == CARD_FMT_ASCII:
        return "ASCII card reports are not read: set the reader to raw or Wiegand output"
    if fmt not in (CARD_FMT_RAW, CARD_FMT_WIEGAND):
        return f"card report in unknown format {fmt}"
    if length <= 0 or len(data) * 8 < length:
        return f"card report says {length} bits but carries {len(data)} bytes"
    if fmt == CARD_FMT_RAW and length in UID_BITS:
        return "nfc", data[:length // 8].hex().upper()
    item = wiegand.decode(bits_of(data, length), raw_lengths)
    if isinstance(item, wiegand.Card):
        return "fob", reading_wiegand(item.bits, item.number, raw=item.facility is None)
    if isinstance(item, wiegand.Key):
        return "key", item.key
    return f"{item.bits}-bit card report: {item.reason}"


def keys_of(data: bytes) -> tuple[str, list[int]]:
    """The keys in a keypad report, and the codes that are not keys."""
    keys, bad = [], []
    for b in data:
        (keys.append(KEY_CODES[b]) if b in KEY_CODES else bad.append(b))
    return "".join(keys), bad


def key_code(key: str) -> int:
    """The OSDP keypad code of a key (for the simulated reader)."""
    return next(c for c, k in KEY_CODES.items() if k == key)


def pack_bits(bits: list[int]) -> bytes:
    """Bits, most significant first, into bytes (an OSDP card report's data)."""
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        out[i // 8] |= b << (7 - i % 8)
    return bytes(out)
