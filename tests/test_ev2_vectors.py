"""The EV2 card cryptography against NXP's published worked examples, byte for byte:
AN10922 section 2.2.1 (AES-128 key diversification) and AN12196 (NTAG 424 DNA
AuthenticateEV2First with key 0, Table 14; CommMode.MAC of GetFileSettings)."""

import pytest

from accessd.errors import CardAuthError
from accessd.protocols import ev2

h = bytes.fromhex


def test_an10922_aes128_diversification_example():
    master = h("00112233445566778899AABBCCDDEEFF")
    key = ev2.diversify_aes128(master, uid=h("04782E21801D80"), aid=h("3042F5"),
                               system=b"NXP Abu")              # 4E585020416275
    assert key == h("A8DD63A3B89D54B37CA802473FDA9175")
    # another card's UID gives another key: a cloned UID without its key is useless
    assert ev2.diversify_aes128(master, uid=h("04782E21801D81"), aid=h("3042F5"),
                                system=b"NXP Abu") != key


def test_diversification_input_is_checked():
    with pytest.raises(ValueError, match="1-31 bytes"):
        ev2.diversify_aes128(bytes(16), uid=b"")
    with pytest.raises(ValueError, match="got 32"):
        ev2.diversify_aes128(bytes(16), uid=bytes(7), system=bytes(25))
    with pytest.raises(ValueError, match="16 bytes, got 8"):
        ev2.diversify_aes128(bytes(8), uid=bytes(7))
    assert len(ev2.diversify_aes128(bytes(16), uid=bytes(7), system=bytes(24))) == 16  # 31


RND_A = h("13C5DB8A5930439FC3DEF9A4C675360F")
ENC_RND_B = h("A04C124213C186F22399D33AC2A30215")             # the card's 91AF answer
CARD_ANSWER = h("3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F08120663")


def test_an12196_authenticate_ev2_first_key0():
    key0 = bytes(16)
    reply, rnd_b = ev2.ev2_first_reply(key0, ENC_RND_B, RND_A)
    assert rnd_b == h("B9E2FC789B64BF237CCCAA20EC7E6E48")
    assert reply == h("35C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D")
    sv1, sv2 = ev2.session_vectors(RND_A, rnd_b)
    assert sv1 == h("A55A0001008013C56268A548D8FBBF237CCCAA20EC7E6E48C3DEF9A4C675360F")
    assert sv2 == h("5AA50001008013C56268A548D8FBBF237CCCAA20EC7E6E48C3DEF9A4C675360F")
    s = ev2.ev2_first_finish(key0, 0, RND_A, rnd_b, CARD_ANSWER)
    assert (s.ti, s.pd_cap2, s.pcd_cap2) == (h("9D00C4DF"), bytes(6), bytes(6))
    assert s.enc_key == h("1309C877509E5A215007FF0ED19CA564")
    assert s.mac_key == h("4C6626F5E72EA694202139295C7A7FC7")
    assert "1309" not in repr(s).upper() and "4C66" not in repr(s).upper()


def test_a_card_without_the_key_is_refused():
    # the reader holds key0; the card answers as if it held another key
    _, rnd_b = ev2.ev2_first_reply(bytes(16), ENC_RND_B, RND_A)
    with pytest.raises(CardAuthError, match="did not prove it holds the key"):
        ev2.ev2_first_finish(bytes(16), 0, RND_A, rnd_b,
                             ev2._cbc(h("00" * 15 + "01"), h("9D00C4DF") + RND_A[1:]
                                      + RND_A[:1] + bytes(12), decrypt=False))
    with pytest.raises(CardAuthError, match="did not prove"):   # a replayed answer
        ev2.ev2_first_finish(bytes(16), 0, bytes(16), rnd_b, CARD_ANSWER)


@pytest.mark.parametrize("answer, why", [(CARD_ANSWER[:31], "31 bytes, not 32"),
                                         (b"", "0 bytes, not 32")])
def test_a_cut_answer_is_refused(answer, why):
    with pytest.raises(CardAuthError, match=why):
        ev2.ev2_first_finish(bytes(16), 0, RND_A, bytes(16), answer)


def test_a_cut_challenge_is_refused():
    with pytest.raises(CardAuthError, match="15 bytes, not 16"):
        ev2.ev2_first_reply(bytes(16), ENC_RND_B[:15], RND_A)


def test_an12196_mac_of_get_file_settings():
    # Cmd F5, CmdCtr 0000, TI 7A21085E, file 02 under SesAuthMACKey 8248134A...
    mac_key = h("8248134A386E86EB7FAF54A52E536CB6")
    assert ev2.mac_t(mac_key, h("F5" "0000" "7A21085E" "02")) == h("6597A457C8CD442C")


PICC = h("EF963FF7828658A599F3041510671E88")     # AN12196 3.4: e= of the SUN URL
SDMMAC = h("94EED9EE65337086")                   # c=, MAC input starting at the MAC


def test_an12196_sun_message_with_factory_keys():
    sun = ev2.sun_verify(bytes(16), bytes(16), PICC, SDMMAC)
    assert (sun.uid, sun.counter) == (h("04DE5F1EACC040"), 61)    # SDMReadCtr 3D0000


@pytest.mark.parametrize("meta, file, picc, mac, why", [
    (bytes(16), bytes(16), PICC, h("94EED9EE65337087"), "MAC does not match"),
    (bytes(16), bytes(15) + b"\x01", PICC, SDMMAC, "MAC does not match"),  # another site
    (bytes(15) + b"\x01", bytes(16), PICC, SDMMAC, "wrong SDM meta-read key"),
    (bytes(16), bytes(16), PICC[:8], SDMMAC, "8 bytes, not 16"),
    (bytes(16), bytes(16), PICC, SDMMAC[:4], "MAC does not match"),
])
def test_a_forged_or_foreign_sun_message_is_refused(meta, file, picc, mac, why):
    with pytest.raises(CardAuthError, match=why):
        ev2.sun_verify(meta, file, picc, mac)


def test_the_sun_mac_covers_the_counter():
    # the same card one read later: same UID, counter 62; the old MAC does not fit it
    later = ev2.Sun(h("04DE5F1EACC040"), 62)
    assert ev2.sdm_mac(bytes(16), later) != SDMMAC


# ---- secure messaging: AN12196 tables 18, 19, 26 and 27 ------------------------------

def _channel(ti: str, enc: str, mac: str, counter: int) -> ev2.Channel:
    return ev2.Channel(ev2.Session(h(ti), 0, h(enc), h(mac)), counter)


AUTH0 = ("9D00C4DF", "1309C877509E5A215007FF0ED19CA564", "4C6626F5E72EA694202139295C7A7FC7")


def test_an12196_change_file_settings_commmode_full():
    ch = _channel(*AUTH0, counter=1)
    assert ch.iv_cmd() == h("3E27082AB2ACC1EF55C57547934E9962")
    apdu = ch.wrap_full(0x5F, h("02"), h("4000E0C1F121200000430000430000"))
    assert apdu == h("905F0000190261B6D97903566E84C3AE5274467E89EAD799B7C1A0EF7A0400")
    assert ch.open_response(0x00, h("57BFF87B1241E93D")) == b""
    assert ch.counter == 2


def test_an12196_write_data_commmode_full_iv():
    assert _channel(*AUTH0, counter=0).iv_cmd() == h("D2CB7277A17841A06654A48188C1F8F5")


def test_a_response_with_a_wrong_mac_is_refused_and_the_counter_stays():
    ch = _channel(*AUTH0, counter=1)
    with pytest.raises(CardAuthError, match="wrong MAC"):
        ch.open_response(0x00, h("57BFF87B1241E93E"))
    with pytest.raises(CardAuthError, match="too short"):
        ch.open_response(0x00, h("57BF"))
    assert ch.counter == 1
    # the same answer one command later is another session's: refused
    with pytest.raises(CardAuthError):
        _channel(*AUTH0, counter=2).open_response(0x00, h("57BFF87B1241E93D"))


CHANGE = ("7614281A", "4CF3CB41A22583A61E89B158D252FC53", "5529860B2FC5FB6154B7F28361D30BF9")


def test_an12196_change_key_of_another_key():
    new = h("F3847D627727ED3BC9C4CC050489B966")
    assert ev2.crc32_nk(new) == h("789DFADC")
    data = ev2.change_key_data(2, 0, new, bytes(16), 1)
    assert ev2.pad_m2(data) == h("F3847D627727ED3BC9C4CC050489B96601789DFADC8000000000000000000000")
    ch = _channel(*CHANGE, counter=2)
    assert ch.iv_cmd() == h("307EDE1814707F30CFE603DD6CA62353")
    assert ch.wrap_full(0xC4, h("02"), data) == h(
        "90C4000029022CF362B7BF4311FF3BE1DAA295E8C68DE09050560D19B9E16C2393AE9CD1FAC75D0CE20B"
        "CD1D06E600")
    ch.open_response(0x00, h("203BB55D1089D587"))
    assert ch.counter == 3


def test_an12196_change_key_of_the_authenticated_key():
    data = ev2.change_key_data(0, 0, h("5004BF991F408672B1EF00F08F9E8647"), None, 1)
    ch = _channel(*CHANGE, counter=3)
    assert ch.iv_cmd() == h("01602D579423B2797BE8B478B0B4D27B")
    assert ch.wrap_full(0xC4, h("00"), data) == h(
        "90C400002900C0EB4DEEFEDDF0B513A03A95A75491818580503190D4D05053FF75668A01D6FDA661023"
        "4BDED643200")
    with pytest.raises(ValueError, match="old value"):
        ev2.change_key_data(2, 0, bytes(16), None, 1)


def test_the_card_side_opens_what_the_reader_side_wraps():
    reader, card = _channel(*AUTH0, counter=5), _channel(*AUTH0, counter=5)
    apdu = reader.wrap_full(0x8D, h("02000000050000"), b"hello")
    header, data = card.open_command(0x8D, apdu[5:-1], 7, full=True)
    assert (header, data) == (h("02000000050000"), b"hello")
    answer = card.seal_response(0x00, b"uid-ish", full=True)
    assert reader.open_response(0x00, answer, full=True) == b"uid-ish"
    assert reader.counter == card.counter == 6
    tampered = bytearray(apdu[5:-1])
    tampered[9] ^= 1
    with pytest.raises(CardAuthError, match="MAC"):
        card.open_command(0x8D, bytes(tampered), 7, full=True)


def test_m2_padding():
    assert ev2.pad_m2(b"") == h("80") + bytes(15)
    assert len(ev2.pad_m2(bytes(16))) == 32
    assert ev2.unpad_m2(ev2.pad_m2(h("0100"))) == h("0100")
    with pytest.raises(CardAuthError, match="padded"):
        ev2.unpad_m2(bytes(16))
