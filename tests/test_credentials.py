import pytest

from accessd.core.credentials import normalize
from accessd.errors import CredentialFormatError


@pytest.mark.parametrize("raw,want", [
    ("04a1b2c3", "04A1B2C3"), ("04:A1:B2:C3:D4:E5:F6", "04A1B2C3D4E5F6"),
    (" 04-a1-b2-c3-d4-e5-f6-07-08-09 ", "04A1B2C3D4E5F6070809")])
def test_nfc_uids(raw, want):
    assert normalize("nfc", raw) == want


@pytest.mark.parametrize("raw,msg", [
    ("", "empty"), ("04A1B2CZ", "hexadecimal"), ("04A1B2", "4, 7, 8 or 10 bytes"),
    ("04A1B2C3D", "4, 7, 8 or 10 bytes")])
def test_bad_nfc_uids(raw, msg):
    with pytest.raises(CredentialFormatError, match=msg):
        normalize("nfc", raw)


def test_pins():
    assert normalize("pin", "0042") == "0042"
    with pytest.raises(CredentialFormatError, match="digits only"):
        normalize("pin", "12a4")
    with pytest.raises(CredentialFormatError, match="4-8 digits"):
        normalize("pin", "123")


def test_unknown_kind():
    with pytest.raises(CredentialFormatError, match="unknown credential kind"):
        normalize("iris", "x")
