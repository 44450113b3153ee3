"""OSDP readers: the door's libosdp control panel (hw/osdp.py) against libosdp's own
peripheral device (hw/osdp_peer.py) on a pseudo-terminal pair, in the secure
channel; and the frame check and report decoding of protocols/osdp.py."""

import queue

import osdp
import pytest

from .helpers import wait_until

from accessd.clock import FakeClock
from accessd.config import ReaderConfig
from accessd.core.door import Outputs
from accessd.core.events import CredentialPresented, KeyPressed, ReaderNotice
from accessd.hw.osdp import ONLINE_TIMEOUT, OsdpReader
from accessd.hw.osdp_peer import OsdpPeer
from accessd.protocols import osdp as proto
from accessd.protocols import wiegand
from accessd.storage.keys import generate
from accessd.storage.reader_keys import ReaderKeys


class Rig:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.q = queue.Queue()
        self.clock = FakeClock()
        self.keys = ReaderKeys(tmp_path / "reader-keys.db", generate())
        self.peers, self.readers = [], []

    def peer(self, scbk=None, address=3):
        p = OsdpPeer(address, scbk).start()
        self.peers.append(p)
        return p

    def reader(self, peer, install_mode=False, **opts):
        cfg = ReaderConfig("entry-osdp", "osdp", {
            "port": peer.port, "address": peer.address, "baudrate": 115200,
            "install_mode": install_mode, "rs485_rts": False, "raw_bits": [],
            "retry_max_seconds": 0.05, **opts})
        r = OsdpReader(cfg, self.q.put, self.clock, retry_initial=0.01, reader_keys=self.keys)
        r.start()
        self.readers.append(r)
        return r

    def keyed(self):
        """A new reader keyed in install mode, in the secure channel, notices read."""
        peer = self.peer()
        reader = self.reader(peer, install_mode=True)
        secure(reader)
        self.notices()
        return peer, reader

    def next(self, cls=object, timeout=10):
        """The next event of this class (others before it are dropped)."""
        while True:
            ev = self.q.get(timeout=timeout)
            if isinstance(ev, cls):
                return ev

    def notices(self):
        out = []
        while not self.q.empty():
            ev = self.q.get_nowait()
            if isinstance(ev, ReaderNotice):
                out.append(ev)
        return out

    def close(self):
        for r in self.readers:
            r.stop()
        for p in self.peers:
            p.stop()
        self.keys.close()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def secure(reader):
    wait_until(lambda: reader.sc_active, 10, "the secure channel")


def comes_back(rig, reader, peer):
    """After a fault: recovered in a new secure session, and reading again."""
    back = rig.next(ReaderNotice, timeout=15)
    assert back.kind == "reader.recovered" and reader.sc_active
    peer.card_uid(bytes.fromhex("A1B2C3D4"))
    assert rig.next(CredentialPresented).value == "A1B2C3D4"


def test_install_mode_keys_a_new_reader_then_cards_and_keys_arrive_in_the_secure_channel(rig):
    peer = rig.peer(scbk=None)                       # fresh from the factory
    reader = rig.reader(peer, install_mode=True)
    secure(reader)
    stored = rig.keys.get("entry-osdp")
    assert stored.installed and peer.scbk == stored.scbk and len(stored.scbk) == 16
    assert peer.is_sc_active()
    assert stored.scbk not in (rig.tmp / "reader-keys.db").read_bytes()
    assert stored.scbk.hex().encode() not in (rig.tmp / "reader-keys.db").read_bytes()

    peer.card_uid(bytes.fromhex("04A1B2C3D4E5F6"))
    ev = rig.next(CredentialPresented)
    assert (ev.reader, ev.kind, ev.value) == ("entry-osdp", "nfc", "04A1B2C3D4E5F6")
    peer.card_bits(wiegand.encode_h10301(123, 4567))
    assert rig.next(CredentialPresented).value == "em24:7B11D7"
    peer.keys("12*9#")
    assert [rig.next(KeyPressed).key for _ in range(5)] == list("12*9#")
    assert reader.health()["state"] == "ok" and reader.health()["secure_channel"]


def test_a_keyed_reader_is_spoken_to_in_the_secure_channel_only(rig):
    key = rig.keys.new("entry-osdp").scbk
    rig.keys.put("entry-osdp", type(rig.keys.get("entry-osdp"))(key, True))
    peer = rig.peer(scbk=key)
    reader = rig.reader(peer)                       # no install mode: ENFORCE_SECURE
    secure(reader)
    peer.card_uid(bytes.fromhex("A1B2C3D4"))
    assert rig.next(CredentialPresented).value == "A1B2C3D4"


def test_a_reader_without_the_doors_key_is_never_read(rig):
    rig.keys.new("entry-osdp")
    peer = rig.peer(scbk=bytes(range(16)))          # a swapped reader with another key
    reader = rig.reader(peer)
    peer.card_uid(bytes.fromhex("A1B2C3D4"))        # its reports never reach the door
    wait_until(lambda: rig.clock.advance(1) or reader.health()["state"] == "fault",
               what="the fault")
    assert rig.clock.monotonic() >= ONLINE_TIMEOUT
    fault = rig.next(ReaderNotice)
    assert fault.kind == "reader.fault"
    assert "no secure channel" in fault.detail and "install_mode" in fault.detail
    assert not reader.sc_active and not peer.is_sc_active()
    assert not any(isinstance(e, CredentialPresented) for e in list(rig.q.queue))


def test_in_install_mode_a_reader_that_cannot_be_keyed_is_still_never_read(rig):
    """libosdp, allowed the default key, falls back to plain text with a reader that
    knows neither key; the door takes nothing from it and reports it."""
    peer = rig.peer(scbk=bytes(range(16)))          # keyed by someone else, not installable
    reader = rig.reader(peer, install_mode=True)
    wait_until(lambda: reader.opened.is_set(), what="the port open")
    uid = bytes.fromhex("A1B2C3D4")

    def plain_report_refused():
        try:
            peer.card_uid(uid)
        except OSError:
            pass                                     # the simulated reader's queue is full
        return reader.health()["bad_frames"] > 0
    wait_until(plain_report_refused, 15, "a report outside the secure channel")
    assert not reader.sc_active
    wait_until(lambda: rig.clock.advance(1) or reader.health()["state"] == "fault",
               60, "the fault")      # (a bound for a loaded machine, not a timing claim)
    events = list(rig.q.queue)
    assert not any(isinstance(e, CredentialPresented) for e in events)
    assert any(isinstance(e, ReaderNotice) and "outside the secure channel" in e.detail
               for e in events)
    assert any(isinstance(e, ReaderNotice) and e.kind == "reader.fault"
               and "no secure channel" in e.detail for e in events)


def test_a_new_reader_is_not_keyed_without_install_mode(rig):
    peer = rig.peer(scbk=None)
    reader = rig.reader(peer)
    fault = rig.next(ReaderNotice)
    assert fault.kind == "reader.fault"
    assert "no secure channel key for this reader yet" in fault.detail
    assert "install_mode = true" in fault.detail
    assert rig.keys.get("entry-osdp") is None and peer.scbk is None
    assert reader.health()["state"] == "fault"


def test_grant_and_deny_drive_the_readers_led_and_beeper(rig):
    peer = rig.peer()
    reader = rig.reader(peer, install_mode=True)
    secure(reader)
    reader.indicate(Outputs(relay_unlocked=True, buzzer=True, green=True, red=False))
    led = peer.wait_command(lambda c: c["command"] == osdp.Command.LED)
    assert led is not None and led["on_color"] == osdp.CommandLEDColor.Green
    assert led["temporary"] and led["timer_count"] > 0
    beep = peer.wait_command(lambda c: c["command"] == osdp.Command.Buzzer)
    assert beep is not None and beep["control_code"] == 2 and beep["rep_count"] == 1
    reader.indicate(Outputs(relay_unlocked=False, buzzer=True, green=False, red=True))
    red = peer.wait_command(lambda c: c["command"] == osdp.Command.LED
                            and c["on_color"] == osdp.CommandLEDColor.Red)
    assert red is not None
    assert peer.wait_command(lambda c: c["command"] == osdp.Command.Buzzer
                             and c["rep_count"] == 3) is not None


def test_tamper_and_a_silent_reader_are_faults_that_clear(rig):
    peer, reader = rig.keyed()
    peer.tamper(True)
    fault = rig.next(ReaderNotice)
    assert fault.kind == "reader.fault" and "tamper" in fault.detail
    peer.tamper(False)
    back = rig.next(ReaderNotice)
    assert back.kind == "reader.recovered" and "tamper" in back.detail

    peer.silent.set()                               # the cable is cut
    wait_until(lambda: rig.clock.advance(0.5) or reader.health()["state"] == "fault",
               what="the silent reader's fault")
    fault = rig.next(ReaderNotice)
    assert fault.kind == "reader.fault" and "stopped answering" in fault.detail
    assert not reader.sc_active
    peer.silent.clear()
    comes_back(rig, reader, peer)


def test_a_reply_with_a_bad_mac_ends_the_session_and_the_reader_comes_back(rig):
    peer, reader = rig.keyed()
    peer.corrupt_mac()
    fault = rig.next(ReaderNotice)
    assert fault.kind == "reader.fault" and "failed its MAC" in fault.detail
    assert not peer.mangle_mac.is_set()             # it was a secure-channel reply
    comes_back(rig, reader, peer)


def test_bad_crc_and_bad_reports_are_bad_frames_and_reading_goes_on(rig):
    peer, reader = rig.keyed()
    peer.corrupt_frame()
    bad = rig.next(ReaderNotice)
    assert bad.kind == "reader.bad_frame" and "fails its CRC" in bad.detail
    rig.clock.advance(1.1)
    peer.card_bits([1, 0, 1] * 8 + [1, 1])          # 26 bits, parity wrong
    bad = rig.next(ReaderNotice)
    assert bad.kind == "reader.bad_frame" and "26-bit card report" in bad.detail
    rig.clock.advance(1.1)
    peer.keypad_bytes(b"1\x072")
    bad = rig.next(ReaderNotice)
    assert "0x07" in bad.detail
    assert [rig.next(KeyPressed).key for _ in range(2)] == ["1", "2"]
    peer.card_uid(bytes.fromhex("A1B2C3D4"))
    assert rig.next(CredentialPresented).value == "A1B2C3D4"
    assert reader.health()["bad_frames"] == 3


# ---- protocols/osdp.py ------------------------------------------------------------

def test_frame_checker_passes_good_frames_and_names_bad_ones():
    # osdp_POLL to address 0x65 with CRC (OSDP 2.2 annex: 53 65 08 00 04 60 + CRC)
    body = bytes([0x53, 0x65, 0x08, 0x00, 0x04, 0x60])
    crc = proto.crc16(body)
    good = body + bytes([crc & 0xFF, crc >> 8])
    assert proto.crc16(b"123456789") == 0xE5CC      # CRC-16/AUG-CCITT check value
    checker = proto.FrameChecker()
    assert checker.feed(b"\xff" + good[:3]) == []   # a mark byte, then a frame in pieces
    assert checker.feed(good[3:] + b"\xff") == []
    bad = bytearray(good)
    bad[-1] ^= 1
    assert checker.feed(bytes(bad)) == ["OSDP frame from address 101 fails its CRC (8 bytes)"]
    chk = bytes([0x53, 0xE5, 0x07, 0x00, 0x00, 0x40])   # an ACK with the byte-sum check
    assert checker.feed(chk + bytes([proto.checksum(chk)])) == []
    assert checker.feed(chk + bytes([proto.checksum(chk) ^ 0x10])) == [
        "OSDP frame from address 101 fails its checksum (7 bytes)"]
    assert checker.feed(b"noise without a start of message") == []
    # a bit error in LEN where a frame begins (after a mark, or right after a frame) is a
    # bad frame too; the same bytes in the middle of noise are not
    wrong_len = bytearray(good)
    wrong_len[3] = 0x80                            # LEN 0x8008: beyond any frame
    assert checker.feed(b"\xff" + bytes(wrong_len)) == [
        "OSDP frame from address 101 gives a length of 32776 bytes (a frame is 7-1440)"]
    assert checker.feed(good + bytes(wrong_len)) == [
        "OSDP frame from address 101 gives a length of 32776 bytes (a frame is 7-1440)"]
    assert checker.feed(b"xyz" + bytes([0x53, 0x01, 0x02, 0x00, 0x00])) == []


def test_card_and_keypad_reports_decode_like_the_other_readers():
    assert proto.card_reading(0, 32, bytes.fromhex("A1B2C3D4")) == ("nfc", "A1B2C3D4")
    frame = wiegand.encode_h10301(123, 4567)
    assert proto.card_reading(1, 26, proto.pack_bits(frame)) == ("fob", "em24:7B11D7")
    assert proto.card_reading(0, 26, proto.pack_bits(frame)) == ("fob", "em24:7B11D7")
    assert proto.card_reading(1, 8, proto.pack_bits(wiegand.encode_key("#"))) == ("key", "#")
    assert "ASCII" in proto.card_reading(2, 32, b"1234")
    assert "carries 1 bytes" in proto.card_reading(1, 26, b"\x01")
    assert "unknown format 9" in proto.card_reading(9, 8, b"\x01")
    assert "30 bits is not a known Wiegand length" in proto.card_reading(1, 30, b"\0" * 4)
    assert proto.card_reading(1, 30, b"\0\0\0\x04", (30,)) == ("fob", "raw30:00000001")
    assert proto.keys_of(b"0123456789\x7f\x0d") == ("0123456789*#", [])
    assert proto.keys_of(b"1\x00A") == ("1A", [0])


def test_an_osdp_reader_in_the_daemon_grants_denies_and_reports(tmp_path):
    import json

    from accessd.config import load_config
    from accessd.storage.eventlog import open_reader
    from accessd.testing import OSDP_SIM_READER, SIM_READER, DaemonProcess, write_sim_config

    from .test_daemon import enrol
    config = write_sim_config(tmp_path / "door", readers=SIM_READER + OSDP_SIM_READER)
    card = enrol(config, "nfc", "04A1B2C3D4E5F6")
    pin = enrol(config, "pin", "2468")
    d = DaemonProcess(config).wait_ready()
    try:
        r = d.request({"op": "sim", "input": "tap", "uid": "04A1B2C3D4E5F6",
                       "reader": "entry-osdp"})
        assert r["decision"] == "granted" and r["credential"] == card.credential_id, r
        r = d.request({"op": "sim", "input": "pin", "keys": "2468#", "reader": "entry-osdp"})
        assert r["decision"] == "granted" and r["credential"] == pin.credential_id, r
        r = d.request({"op": "sim", "input": "tap", "uid": "04FFFFFFFFFFFF",
                       "reader": "entry-osdp"})
        assert r["decision"] == "denied", r
        health = {h["name"]: h for h in d.request({"op": "status"})["readers"]}
        assert health["entry-osdp"]["state"] == "ok" and health["entry-osdp"]["secure_channel"]
    finally:
        d.terminate()
    cfg = load_config(config)
    rows = open_reader(cfg.storage.eventlog_path).execute(
        "SELECT kind, detail FROM events WHERE kind LIKE 'access.%' ORDER BY seq").fetchall()
    assert [(r["kind"], json.loads(r["detail"])["reader"]) for r in rows] == [
        ("access.granted", "entry-osdp"), ("access.granted", "entry-osdp"),
        ("access.denied", "entry-osdp")]
    assert (cfg.storage.data_dir / "reader-keys.db").exists()
    said = d.stderr_path.read_text()
    assert "04A1B2C3D4E5F6" not in said
    # keying in install mode is the door's to report, not libosdp's expected "error"
    assert "Failed to verify PD cryptogram" not in said and "now holds its" in said


@pytest.mark.parametrize("extra,message", [
    ('address = 127', r"readers\[1\]\.address: must be an OSDP address 0-126, got 127"),
    ('baudrate = 12345', r"readers\[1\]\.baudrate: must be one of 9600, .*; got 12345"),
    ('raw_bits = [26]', r"readers\[1\]\.raw_bits: must list frame lengths 9-64"),
    ('install_mode = "yes"', r"readers\[1\]\.install_mode: must be true or false, got str"),
    ('scbk = "00"', r"readers\[1\]\.scbk: unknown key"),
])
def test_osdp_reader_config_is_checked(tmp_path, extra, message):
    from accessd.config import load_config
    from accessd.errors import ConfigError
    from accessd.testing import SIM_READER, write_sim_config
    block = '\n[[readers]]\nname = "entry-osdp"\nkind = "osdp"\nport = "/dev/ttyUSB0"\n'
    config = write_sim_config(tmp_path, readers=SIM_READER + block + extra + "\n")
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(config)
    assert str(config) in str(exc.value)


def test_two_readers_on_one_serial_port_are_refused(tmp_path):
    from accessd.config import load_config
    from accessd.errors import ConfigError
    from accessd.testing import write_sim_config
    readers = ('[[readers]]\nname = "a"\nkind = "osdp"\nport = "/dev/ttyUSB0"\n'
               '[[readers]]\nname = "b"\nkind = "em4100-serial"\nport = "/dev/ttyUSB0"\n')
    config = write_sim_config(tmp_path, readers=readers)
    with pytest.raises(ConfigError, match=r"readers\[1\]\.port: /dev/ttyUSB0 is also used by "
                                          r"readers\[0\] \(one reader per serial port\)"):
        load_config(config)
