"""125 kHz (EM4100) serial reader frames. Pure: bytes in, frames out.

rdm6300: STX 0x02, 10 ASCII hex (version byte + 4-byte tag id), 2 ASCII hex
         checksum (XOR of the 5 bytes), ETX 0x03, e.g. 02 "0A00C0FFEE" "DB" 03.
         Readers repeat the frame while a fob is held.
ascii-decimal: 10 decimal digits (the 32-bit tag id) then CR/LF, as printed on
         most fobs, e.g. "0012648430\\r\\n"; an STX/ETX wrapper is tolerated.

A Tag is the 32-bit id and (rdm6300) the version byte; core.credentials.reading_em
turns it into the credential value (em40 with the version byte, em32 without).
"""

from __future__ import annotations

from dataclasses import dataclass

STX, ETX = 0x02, 0x03
_HEXDIGITS = frozenset(b"0123456789ABCDEFabcdef")


@dataclass(frozen=True)
class Tag:
    number: int          # 32-bit tag id
    version: int | None  # manufacturer / version byte, when the format carries it


@dataclass(frozen=True)
class BadFrame:
    reason: str


class Rdm6300Parser:
    FRAME_CHARS = 12

    def __init__(self) -> None:
        self._buf: bytearray | None = None  # None = waiting for STX
        self._noise = 0

    def feed(self, data: bytes) -> list[Tag | BadFrame]:
        out: list[Tag | BadFrame] = []
        for b in data:
            if b == STX:
                if self._buf is not None:
                    out.append(BadFrame(f"frame cut short after {len(self._buf)} characters "
                                        "(new STX); resynchronised"))
                elif self._noise:
                    out.append(BadFrame(f"{self._noise} bytes of noise between frames"))
                self._noise = 0
                self._buf = bytearray()
            elif self._buf is None:
                if b not in (0x0D, 0x0A):
                    self._noise += 1
            elif b == ETX:
                out.append(self._frame(bytes(self._buf)))
                self._buf = None
            else:
                self._buf.append(b)
                if len(self._buf) > self.FRAME_CHARS:
                    out.append(BadFrame(f"frame longer than {self.FRAME_CHARS} characters "
                                        "without ETX"))
                    self._buf = None
        return out

    def _frame(self, body: bytes) -> Tag | BadFrame:
        if len(body) != self.FRAME_CHARS:
            return BadFrame(f"frame has {len(body)} characters, expected {self.FRAME_CHARS}")
        if any(c not in _HEXDIGITS for c in body):
            return BadFrame("frame has a character that is not hexadecimal")
        raw = bytes.fromhex(body.decode())
        data, checksum = raw[:5], raw[5]
        x = 0
        for b in data:
            x ^= b
        if x != checksum:
            return BadFrame(f"checksum mismatch (frame says {checksum:02X}, data gives {x:02X})")
        return Tag(number=int.from_bytes(data[1:], "big"), version=data[0])


class AsciiDecimalParser:
    MAX_LINE = 32

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Tag | BadFrame]:
        out: list[Tag | BadFrame] = []
        for b in data:
            if b in (0x0D, 0x0A):
                if self._buf:
                    out.append(self._line(bytes(self._buf)))
                    self._buf.clear()
            elif b in (STX, ETX):
                continue
            else:
                self._buf.append(b)
                if len(self._buf) > self.MAX_LINE:
                    out.append(BadFrame(f"line longer than {self.MAX_LINE} characters"))
                    self._buf.clear()
        return out

    @staticmethod
    def _line(line: bytes) -> Tag | BadFrame:
        if not line.isdigit():
            return BadFrame("line is not decimal digits")
        if len(line) != 10:
            return BadFrame(f"line has {len(line)} digits, expected 10")
        number = int(line)
        if number >= 1 << 32:
            return BadFrame("number does not fit in 32 bits")
        return Tag(number=number, version=None)


def frame_rdm6300(number: int, version: int = 0) -> bytes:
    """Build an RDM6300 frame (for simulation and tests)."""
    data = bytes([version]) + number.to_bytes(4, "big")
    x = 0
    for b in data:
        x ^= b
    return bytes([STX]) + (data.hex().upper() + f"{x:02X}").encode() + bytes([ETX])


PARSERS = {"rdm6300": Rdm6300Parser, "ascii-decimal": AsciiDecimalParser}
