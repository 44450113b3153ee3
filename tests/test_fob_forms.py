"""One credential, many readers: every form staff enrol a fob or card by, checked
against published examples, and what each reader gives for the same token.

Published examples used here:
- i-keys.de "RFID Chip-Codes": EM4102 internal code 0102b0a5fd = 13-digit decimal
  0004340098557 = Wiegand-34 10-digit 0045131261 = "WEG32" 00688,42493 = Wiegand-26
  176,42493.
- Roger (RACS) EMC-1 card print: "0004329479323 014, 40091" (40-bit ID in 13 digits,
  then facility, card).
- Suprema BioStar 2 note on EM4100: full ID 322126887957 = "75 - 4340757" (version
  byte 75, 32-bit data 4340757).
- CIVINTEC CN56 reader manual: Wiegand-26 of data D4 1B 81 is
  1 11010100 00011011 10000001 0; Wiegand-34 of 89 D4 1B 81 is
  1 10001001 11010100 00011011 10000001 1.
- Hikvision Wiegand manual: card 1234567890 on Wiegand-34 is
  1 0100 1001 1001 0110 0000 0010 1101 0010 0.
"""

import pytest

from accessd.core.credentials import (lookup_values, normalize, reading_em,
                                      reading_wiegand, readers_matching, unreadable_reason,
                                      whitelist_values)
from accessd.errors import CredentialFormatError
from accessd.protocols import em4100, wiegand


def bits(text: str) -> list[int]:
    return [int(c) for c in text.replace(" ", "")]


def forms(value: str) -> list[str]:
    """The keys an enrolled value is published under (own form first)."""
    return whitelist_values("fob", normalize("fob", value))


# ---- enrolment forms -----------------------------------------------------------------
@pytest.mark.parametrize("printed", ["0102b0a5fd", "0102B0A5FD", "0x0102b0a5fd",
                                     "0004340098557", " 0004340098557 ", "em40:0102b0a5fd"])
def test_full_em_id_in_every_printed_form(printed):
    assert normalize("fob", printed) == "em40:0102B0A5FD"


def test_ikeys_em4102_example_all_forms_are_one_fob():
    full = forms("0102b0a5fd")
    assert full == ["em40:0102B0A5FD", "em32:02B0A5FD", "em24:B0A5FD"]
    # the 32-bit forms (Wiegand-34 decimal, WEG32 5+5) are its em32 form
    assert normalize("fob", "0045131261") == full[1]
    assert normalize("fob", "00688,42493") == full[1]
    # Wiegand-26 facility,card is its em24 form
    assert normalize("fob", "176,42493") == full[2] == normalize("fob", "176:42493")


def test_roger_emc1_card_print():
    full = forms("0004329479323")
    assert normalize("fob", "014, 40091") == full[2]  # as printed, with the space


def test_suprema_full_id_and_data_bits():
    full = forms("322126887957")  # 12 digits, above 32 bits: the full ID
    assert full[0] == f"em40:{75:02X}{4340757:08X}"
    assert normalize("fob", "4340757") == full[1]


def test_version_byte_makes_two_credentials_but_the_same_narrow_forms():
    a, b = forms("0102B0A5FD"), forms("0202B0A5FD")
    assert a[0] != b[0]
    assert a[1:] == b[1:]


def test_decimal_up_to_32_bits_is_the_printed_number():
    assert normalize("fob", "12648430") == "em32:00C0FFEE"
    assert normalize("fob", "4294967295") == "em32:FFFFFFFF"
    assert normalize("fob", "0x00C0FFEE") == "em32:00C0FFEE"


@pytest.mark.parametrize("raw,canonical", [
    ("raw40:0A00C0FFEE", "raw40:0A00C0FFEE"), ("RAW64:FFFFFFFFFFFFFFFF", "raw64:FFFFFFFFFFFFFFFF"),
    ("raw1:1", "raw1:1"), ("raw48:1", "raw48:000000000001"), ("w37:1", "w37:000000001")])
def test_raw_wiegand_frames_up_to_64_bits(raw, canonical):
    assert normalize("fob", raw) == canonical
    assert forms(raw) == [canonical]  # no narrower forms: a raw frame is what it is


@pytest.mark.parametrize("bad,msg", [
    ("", "empty"), ("12a", "must be decimal"), ("0x", "0x plus hex"),
    ("0x123456789", "0x plus 9 hex digits"), ("9999999999", "write it with 0x"),
    ("000012648430", "12 digits"), ("1" * 14, "14-digit number is above 40 bits"), ("00012648430", "11 digits"),
    ("9999999999999", "above 40 bits"), ("256:1", "facility 256"),
    ("176:65536", "above 65535"), ("70000,1", "above 65535"), ("raw65:1", "1-64 bits"),
    ("raw0:0", "1-64 bits"), ("raw8:1FF", "does not fit in 8 bits"),
    ("em24:1000000", "does not fit in 24 bits"), ("١٢", "must be decimal"),
    ("0102B0A5FDX", "must be decimal")])
def test_bad_fob_forms_say_what_is_wrong(bad, msg):
    with pytest.raises(CredentialFormatError, match=msg):
        normalize("fob", bad)


# ---- what each reader gives for the same fob ---------------------------------------------
def test_rdm6300_frame_gives_the_full_id():
    p = em4100.Rdm6300Parser()
    [tag] = p.feed(em4100.frame_rdm6300(0x02B0A5FD, 0x01))
    assert reading_em(tag.number, tag.version) == forms("0004340098557")[0]


def test_ascii_decimal_reader_gives_the_32_bit_number():
    [tag] = em4100.AsciiDecimalParser().feed(b"0045131261\r\n")
    assert reading_em(tag.number, tag.version) == forms("0102b0a5fd")[1]


def test_wiegand_26_published_frame_matches_facility_card():
    card = wiegand.decode(bits("1 11010100 00011011 10000001 0"))
    assert (card.facility, card.card) == (0xD4, 0x1B81)
    assert reading_wiegand(card.bits, card.number) == normalize("fob", f"{0xD4}:{0x1B81}")
    assert wiegand.encode_h10301(0xD4, 0x1B81) == bits("1 11010100 00011011 10000001 0")


@pytest.mark.parametrize("frame,number", [
    ("1 10001001 11010100 00011011 10000001 1", 0x89D41B81),
    ("1 0100 1001 1001 0110 0000 0010 1101 0010 0", 1234567890)])
def test_wiegand_34_published_frames_match_the_decimal(frame, number):
    card = wiegand.decode(bits(frame))
    assert card.number == number
    assert reading_wiegand(card.bits, card.number) == normalize("fob", str(number))
    assert wiegand.encode_card(34, number) == bits(frame)


def test_wiegand_37_and_raw_readings():
    frame = wiegand.encode_card(37, (1234 << 19) | 56789)
    card = wiegand.decode(frame)
    assert (card.facility, card.card) == (1234, 56789)
    assert reading_wiegand(37, card.number) == normalize("fob", f"w37:{card.number:X}")
    raw = wiegand.decode(wiegand.encode_raw(40, 0x0A00C0FFEE), raw_lengths=(40,))
    assert reading_wiegand(40, raw.number, raw=True) == normalize("fob", "raw40:0A00C0FFEE")


# ---- matching rules ----------------------------------------------------------------------
def test_em_forms_match_every_em_reader_and_raw_frames_only_their_own():
    readers = ["rdm6300", "ascii-decimal", "wiegand-26", "wiegand-34", "wiegand-37",
               "wiegand-raw-40", "nfc", "keypad"]
    em = ["rdm6300", "ascii-decimal", "wiegand-26", "wiegand-34"]
    for value in ("0004340098557", "0045131261", "176:42493"):
        assert readers_matching("fob", normalize("fob", value), readers) == em
    assert readers_matching("fob", normalize("fob", "raw40:0A00C0FFEE"), readers) == \
        ["wiegand-raw-40"]
    assert readers_matching("fob", normalize("fob", "w37:1"), readers) == ["wiegand-37"]


def test_enrolment_no_reader_can_match_is_explained():
    why = unreadable_reason("fob", normalize("fob", "176:42493"), ["nfc", "keypad"])
    assert "26-bit Wiegand facility:card" in why and "keypad, nfc" in why
    assert "capture" in why
    why = unreadable_reason("fob", normalize("fob", "raw40:0A00C0FFEE"), ["rdm6300"])
    assert "raw 40-bit Wiegand frame" in why
    assert unreadable_reason("fob", normalize("fob", "176:42493"), ["rdm6300"]) is None
    assert "no reader on this site reads a pin" in unreadable_reason("pin", "1234", ["nfc"])


def test_door_looks_up_the_reading_then_narrower_enrolments_then_the_old_decimal():
    assert lookup_values("fob", "em40:0102B0A5FD") == (
        ("em40:0102B0A5FD", True), ("em32:02B0A5FD", False), ("em24:B0A5FD", False),
        ("45131261", False))
    assert lookup_values("fob", "em24:B0A5FD") == (("em24:B0A5FD", True),
                                                   (str(0xB0A5FD), False))
    assert lookup_values("fob", "raw40:0A00C0FFEE")[0] == ("raw40:0A00C0FFEE", True)
    assert lookup_values("nfc", "04A1B2C3") == (("04A1B2C3", True),)
