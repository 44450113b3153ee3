"""The Wiegand reader through gpiozero, with real pulse trains on MockFactory pins."""

import queue
import time

import pytest
from gpiozero import DigitalInputDevice

from accessd.clock import FakeClock, SystemClock
from accessd.config import ReaderConfig
from accessd.core.events import CredentialPresented, KeyPressed, ReaderNotice
from accessd.hw.wiegand import WiegandReader
from accessd.protocols.wiegand import encode_card, encode_h10301, encode_key, encode_raw



D0, D1 = 20, 21


def pulse_train(factory, bits, width=80e-6, period=2e-3):
    """Low pulses of `width` every `period` seconds, timed with a busy wait."""
    pins = {0: factory.pin(D0), 1: factory.pin(D1)}
    t = time.perf_counter()
    for b in bits:
        pins[b].drive_low()
        end = t + width
        while time.perf_counter() < end:
            pass
        pins[b].drive_high()
        t += period
        while time.perf_counter() < t:
            pass


def make_reader(factory, clock, q, **opts):
    cfg = ReaderConfig("gate", "wiegand", {"d0_pin": D0, "d1_pin": D1, "gap_ms": 25,
                                           "raw_bits": [], "retry_max_seconds": 0.05, **opts})
    r = WiegandReader(cfg, q.put, clock, factory=factory, retry_initial=0.01)
    r.start()
    return r


@pytest.fixture
def rig(factory):
    q, clock = queue.Queue(), FakeClock()
    r = make_reader(factory, clock, q)
    assert r.opened.wait(5)
    yield r, q, clock, factory
    r.stop()


def end_frame(reader, clock):
    clock.advance(0.025)
    reader.wake()


def test_h10301_card(rig):
    reader, q, clock, factory = rig
    pulse_train(factory, encode_h10301(192, 65518), period=0)
    end_frame(reader, clock)
    ev = q.get(timeout=5)
    assert isinstance(ev, CredentialPresented) and (ev.kind, ev.value) == ("fob", "em24:C0FFEE")


def test_34_and_37_bit_cards_and_a_raw_frame_give_their_canonical_values(factory):
    """A Wiegand-34 frame is the fob's 32-bit number (Hikvision's published example),
    37 bits an H10304 card, and a raw length only when the config lists it."""
    q, clock = queue.Queue(), FakeClock()
    r = make_reader(factory, clock, q, raw_bits=[40])
    try:
        assert r.opened.wait(5)
        got = []
        for bits in (encode_card(34, 1234567890), encode_card(37, (1234 << 19) | 56789),
                     encode_raw(40, 0x0A00C0FFEE), encode_raw(44, 1)):
            pulse_train(factory, bits, period=0)
            end_frame(r, clock)
            got.append(q.get(timeout=5))
        assert [g.value for g in got[:3]] == [
            "em32:499602D2", f"w37:{(1234 << 19) | 56789:09X}", "raw40:0A00C0FFEE"]
        assert got[3].kind == "reader.bad_frame" and "44 bits" in got[3].detail
    finally:
        r.stop()


def test_bad_parity_and_bad_length_are_bad_frames(rig):
    reader, q, clock, factory = rig
    bits = encode_h10301(1, 2)
    bits[5] ^= 1
    pulse_train(factory, bits, period=0)
    end_frame(reader, clock)
    ev = q.get(timeout=5)
    assert isinstance(ev, ReaderNotice) and ev.kind == "reader.bad_frame"
    assert ev.detail == "26-bit frame: even parity over bits 1-13 fails"
    clock.advance(2)   # past the notice rate limit
    pulse_train(factory, [1] * 25, period=0)
    end_frame(reader, clock)
    assert "25 bits is not a known Wiegand length" in q.get(timeout=5).detail
    assert reader.health()["bad_frames"] == 2


def test_keypad_bursts_become_keys(rig):
    reader, q, clock, factory = rig
    for k in "12#":
        pulse_train(factory, encode_key(k, 8), period=0)
        end_frame(reader, clock)
        ev = q.get(timeout=5)
        assert isinstance(ev, KeyPressed) and ev.key == k
    pulse_train(factory, encode_key("7", 4), period=0)
    end_frame(reader, clock)
    assert q.get(timeout=5).key == "7"


def test_bits_closer_than_the_gap_stay_one_frame(rig):
    reader, q, clock, factory = rig
    bits = encode_h10301(10, 20)
    pulse_train(factory, bits[:13], period=0)
    clock.advance(0.02)          # less than the gap: the frame goes on
    reader.wake()
    pulse_train(factory, bits[13:], period=0)
    end_frame(reader, clock)
    assert q.get(timeout=5).value == f"em24:{(10 << 16) | 20:06X}"


def test_line_held_low_is_a_fault_until_released(rig):
    reader, q, clock, factory = rig
    factory.pin(D0).drive_low()          # reader unpowered or D0 shorted to ground
    clock.advance(1.0)
    reader.wake()
    kinds = [q.get(timeout=5), q.get(timeout=5)]
    assert [k.kind for k in kinds] == ["reader.bad_frame", "reader.fault"]
    assert "D0 held low" in kinds[1].detail and reader.health()["state"] == "fault"
    factory.pin(D0).drive_high()
    assert q.get(timeout=5).kind == "reader.recovered"
    pulse_train(factory, encode_h10301(3, 4), period=0)
    end_frame(reader, clock)
    assert q.get(timeout=5).value == f"em24:{(3 << 16) | 4:06X}"


def test_pin_in_use_is_a_fault_and_the_reader_recovers(factory):
    q = queue.Queue()
    other = DigitalInputDevice(D1, pin_factory=factory)
    r = make_reader(factory, FakeClock(), q)
    try:
        ev = q.get(timeout=5)
        assert ev.kind == "reader.fault" and "cannot open" in ev.detail
        other.close()
        assert q.get(timeout=5).kind == "reader.recovered"
    finally:
        r.stop()


def test_real_time_pulse_train_is_decoded_after_the_gap(factory):
    """26 pulses of 80 µs every 2 ms, the reader thread on the real clock."""
    q = queue.Queue()
    r = make_reader(factory, SystemClock(), q)
    try:
        assert r.opened.wait(5)
        pulse_train(factory, encode_h10301(192, 65518))
        ev = q.get(timeout=2)
        assert ev.value == "em24:C0FFEE"
    finally:
        r.stop()
