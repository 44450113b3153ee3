"""Byte- and bit-level tests of the reader wire protocols."""

import pytest
from hypothesis import given, strategies as st

from accessd.protocols import em4100, wiegand


def test_rdm6300_published_example():
    # 02 "0A00C0FFEE" "DB" 03: version 0x0A, tag 0x00C0FFEE, XOR checksum 0xDB
    frame = b"\x02" + b"0A00C0FFEE" + b"DB" + b"\x03"
    assert em4100.frame_rdm6300(0x00C0FFEE, 0x0A) == frame
    assert em4100.Rdm6300Parser().feed(frame) == [em4100.Tag(12648430, 0x0A)]


def test_rdm6300_split_across_reads_and_repeated():
    p = em4100.Rdm6300Parser()
    frame = em4100.frame_rdm6300(42, 1)
    assert p.feed(frame[:5]) == []
    assert p.feed(frame[5:] + frame) == [em4100.Tag(42, 1)] * 2


@pytest.mark.parametrize("data,reason", [
    (b"\x02" + b"0A00C0FFEE" + b"DC" + b"\x03", "checksum mismatch (frame says DC, data gives DB)"),
    (b"\x02" + b"0A00C0FFEG" + b"DB" + b"\x03", "not hexadecimal"),
    (b"\x02" + b"0A00C0FF" + b"\x03", "frame has 8 characters, expected 12"),
    (b"\x02" + b"0A00C0FFEEDB00" , "longer than 12 characters"),
])
def test_rdm6300_bad_frames(data, reason):
    out = em4100.Rdm6300Parser().feed(data)
    assert len(out) == 1 and isinstance(out[0], em4100.BadFrame) and reason in out[0].reason


def test_rdm6300_resyncs_on_stx():
    good = em4100.frame_rdm6300(7)
    out = em4100.Rdm6300Parser().feed(b"\x02" + b"0A00" + good + b"xyz" + good)
    assert out[0] == em4100.BadFrame("frame cut short after 4 characters (new STX); resynchronised")
    assert out[1] == em4100.Tag(7, 0)
    assert out[2] == em4100.BadFrame("3 bytes of noise between frames")
    assert out[3] == em4100.Tag(7, 0)


@given(st.binary(max_size=200))
def test_rdm6300_never_crashes_on_noise(data):
    for item in em4100.Rdm6300Parser().feed(data):
        assert isinstance(item, (em4100.Tag, em4100.BadFrame))


def test_ascii_decimal():
    p = em4100.AsciiDecimalParser()
    assert p.feed(b"0012648430\r\n\x020000000042\r\n\x03") == [em4100.Tag(12648430, None),
                                                              em4100.Tag(42, None)]
    assert p.feed(b"12345\r\n")[0].reason == "line has 5 digits, expected 10"
    assert p.feed(b"00126x8430\n")[0].reason == "line is not decimal digits"
    assert p.feed(b"9999999999\n")[0].reason == "number does not fit in 32 bits"


def test_h10301_known_card():
    # facility 192, card 65518: the same 24 bits as EM4100 tag 0x00C0FFEE
    bits = wiegand.encode_h10301(192, 65518)
    assert len(bits) == 26
    card = wiegand.decode(bits)
    assert card == wiegand.Card(26, "H10301", 192, 65518, 12648430)


def test_published_vectors():
    # A reader manual's examples: W26 data D4 1B 81 -> 1 11010100 00011011 10000001 0;
    # W34 data 89 D4 1B 81 -> 1 10001001 11010100 00011011 10000001 1.
    w26 = [int(c) for c in "1" "110101000001101110000001" "0"]
    assert wiegand.decode(w26) == wiegand.Card(26, "H10301", 0xD4, 0x1B81, 0xD41B81)
    w34 = [int(c) for c in "1" "10001001110101000001101110000001" "1"]
    assert wiegand.decode(w34) == wiegand.Card(34, "34-bit", 0x89D4, 0x1B81, 0x89D41B81)


@given(st.integers(0, 255), st.integers(0, 65535), st.integers(0, 25))
def test_h10301_any_single_bit_flip_is_a_bad_frame(fc, cn, flip):
    bits = wiegand.encode_h10301(fc, cn)
    assert wiegand.decode(bits).card == cn
    bits[flip] ^= 1
    assert isinstance(wiegand.decode(bits), wiegand.BadFrame)


def test_34_and_37_bit():
    data34 = [int(c) for c in f"{1234:016b}{56789:016b}"]
    bits34 = [sum(data34[:16]) % 2] + data34 + [1 - sum(data34[16:]) % 2]
    assert wiegand.decode(bits34) == wiegand.Card(34, "34-bit", 1234, 56789, (1234 << 16) | 56789)
    data37 = [int(c) for c in f"{4321:016b}{500000:019b}"]
    even = sum(data37[:18]) % 2
    bits37 = [even] + data37
    bits37.append(1 - sum(bits37[18:]) % 2)
    assert wiegand.decode(bits37) == wiegand.Card(37, "H10304", 4321, 500000, (4321 << 19) | 500000)
    bits37[-1] ^= 1
    assert "odd parity over bits 19-37 fails" in wiegand.decode(bits37).reason


def test_keys():
    assert [wiegand.decode(wiegand.encode_key(k, 4)).key for k in "0123456789*#"] == list("0123456789*#")
    assert [wiegand.decode(wiegand.encode_key(k, 8)).key for k in "0123456789*#"] == list("0123456789*#")
    assert wiegand.decode([0, 0, 0, 0, 0, 0, 0, 1]).reason == "8-bit key fails its complement check"
    assert wiegand.decode([1, 1, 1, 1]).reason == "4-bit key code 15 is not a key"


def test_lengths():
    assert "25 bits is not a known Wiegand length" in wiegand.decode([1] * 25).reason
    assert wiegand.decode([1, 0] * 16, raw_lengths=(32,)).number == int("10" * 16, 2)
    assert isinstance(wiegand.decode([1, 0] * 16), wiegand.BadFrame)
