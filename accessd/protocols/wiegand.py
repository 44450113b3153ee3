"""Wiegand frames. Pure: a list of bits in, a card, keys or a bad frame out.

| bits | format                  | layout                                   |
|------|-------------------------|------------------------------------------|
| 4    | keypad key              | 0-9, 10 = '*', 11 = '#'                  |
| 8    | keypad key, checked     | high nibble = complement of low nibble   |
| 26   | H10301                  | P(even,1-13) FC:8 CN:16 P(odd,14-26)     |
| 34   | 34-bit                  | P(even,1-17) FC:16 CN:16 P(odd,18-34)    |
| 37   | H10304                  | P(even,1-19) FC:16 CN:19 P(odd,19-37)    |
| N    | raw (opt-in per reader) | the bits as one number, no parity        |

A card is a credential of kind "fob": its data bits without parity as one
number (H10301: facility × 65536 + card); core.credentials.reading_wiegand gives
its canonical form (26 -> em24, 34 -> em32, 37 -> w37, raw N -> rawN).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.credentials import reading_wiegand

MAX_BITS = 64
_KEYS = "0123456789*#"


@dataclass(frozen=True)
class Card:
    bits: int
    format: str
    facility: int | None
    card: int
    number: int  # the data bits without parity: the whitelist value


@dataclass(frozen=True)
class Key:
    key: str


@dataclass(frozen=True)
class BadFrame:
    bits: int
    reason: str


def _int(bits: list[int]) -> int:
    v = 0
    for b in bits:
        v = (v << 1) | b
    return v


def _parity_ok(bits: list[int], even_end: int, odd_start: int) -> str | None:
    if sum(bits[:even_end]) % 2:
        return f"even parity over bits 1-{even_end} fails"
    if sum(bits[odd_start:]) % 2 != 1:
        return f"odd parity over bits {odd_start + 1}-{len(bits)} fails"
    return None


# bits -> (name, even parity span end, odd parity span start, facility bits)
_FORMATS = {26: ("H10301", 13, 13, 8), 34: ("34-bit", 17, 17, 16), 37: ("H10304", 19, 18, 16)}


def decode(bits: list[int], raw_lengths: tuple[int, ...] = ()) -> Card | Key | BadFrame:
    n = len(bits)
    if n == 4:
        v = _int(bits)
        return Key(_KEYS[v]) if v < 12 else BadFrame(4, f"4-bit key code {v} is not a key")
    if n == 8:
        hi, lo = _int(bits[:4]), _int(bits[4:])
        if hi != (~lo & 0xF):
            return BadFrame(8, "8-bit key fails its complement check")
        return Key(_KEYS[lo]) if lo < 12 else BadFrame(8, f"8-bit key code {lo} is not a key")
    if n in _FORMATS:
        name, even_end, odd_start, fc_bits = _FORMATS[n]
        err = _parity_ok(bits, even_end, odd_start)
        if err:
            return BadFrame(n, err)
        data = bits[1:-1]
        return Card(n, name, _int(data[:fc_bits]), _int(data[fc_bits:]), _int(data))
    if n in raw_lengths:
        return Card(n, f"raw {n}-bit", None, _int(bits), _int(bits))
    return BadFrame(n, f"{n} bits is not a known Wiegand length (4, 8, 26, 34, 37"
                       + "".join(f", {r}" for r in raw_lengths) + ")")


def encode_h10301(facility: int, card: int) -> list[int]:
    """Bits of a valid H10301 frame (for simulation and tests)."""
    return encode_card(26, facility << 16 | card)


def encode_card(n: int, number: int) -> list[int]:
    """Bits of a valid 26-, 34- or 37-bit frame carrying these data bits, with its
    parity (for simulation and tests)."""
    _, even_end, odd_start, _ = _FORMATS[n]
    data = [int(c) for c in f"{number:0{n - 2}b}"]
    if len(data) != n - 2:
        raise ValueError(f"{number} does not fit the {n - 2} data bits of a {n}-bit frame")
    even = sum(data[:even_end - 1]) % 2
    odd = 1 - sum(data[odd_start - 1:]) % 2
    return [even] + data + [odd]


def encode_raw(n: int, number: int) -> list[int]:
    """The bits of a raw n-bit frame (for simulation and tests)."""
    if number >= 1 << n:
        raise ValueError(f"{number} does not fit in {n} bits")
    return [int(c) for c in f"{number:0{n}b}"]


def encode_key(key: str, bits: int = 8) -> list[int]:
    v = _KEYS.index(key)
    nib = [int(c) for c in f"{v:04b}"]
    return nib if bits == 4 else [1 - b for b in nib] + nib


def frame_for(fob, raw_lengths: tuple[int, ...], reader: str) -> tuple[list[int], str]:
    """The frame a Wiegand reader sends for a fob (core.credentials.Fob), and the
    reading the door makes of it (simulation): a raw frame as enrolled, a 37-bit
    card, or an EM fob's low 24 bits as a 26-bit facility:card frame."""
    if fob.family.startswith("raw"):
        if fob.bits not in raw_lengths:
            raise ValueError(f"reader {reader} does not take raw {fob.bits}-bit frames "
                             "(raw_bits in its config)")
        return encode_raw(fob.bits, fob.number), fob.canonical
    if fob.family == "w37":
        return encode_card(37, fob.number), fob.canonical
    number = fob.number & 0xFFFFFF
    return encode_card(26, number), reading_wiegand(26, number)
