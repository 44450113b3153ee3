"""The matrix keypad through gpiozero, with a keypad peer wired row-to-column on MockFactory."""

import queue

import pytest
from gpiozero import DigitalOutputDevice

from accessd.clock import FakeClock
from accessd.config import ReaderConfig
from accessd.core.events import KeyPressed
from accessd.hw.keypad_matrix import MatrixKeypadReader

from .helpers import wait_until

ROWS, COLS = [5, 6, 13, 19], [12, 16, 20]


def make(factory, q, **opts):
    cfg = ReaderConfig("keypad", "keypad-matrix",
                       {"row_pins": ROWS, "col_pins": COLS, "keys": ["123", "456", "789", "*0#"],
                        "debounce_ms": 0, "retry_max_seconds": 0.05, **opts})
    r = MatrixKeypadReader(cfg, q.put, FakeClock(), factory=factory, retry_initial=0.01)
    r.start()
    return r


@pytest.fixture
def keypad(factory):
    q = queue.Queue()
    r = make(factory, q)
    assert r.opened.wait(5)
    yield r, q
    r.stop()


def type_keys(reader, q, keys):
    got = []
    for k in keys:
        reader.peer.press(k)
        ev = q.get(timeout=5)
        assert isinstance(ev, KeyPressed)
        got.append(ev.key)
        reader.peer.release(k)
        wait_until(reader.idle.is_set, what="the keypad to re-arm")
    return "".join(got)


def test_every_key_is_found_by_the_scan(keypad):
    reader, q = keypad
    assert type_keys(reader, q, "123456789*0#") == "123456789*0#"


def test_a_held_key_counts_once(keypad):
    reader, q = keypad
    reader.peer.press("5")
    assert q.get(timeout=5).key == "5"
    reader.peer.update()          # still held: rows re-driven, columns re-read
    reader.peer.release("5")
    assert type_keys(reader, q, "6") == "6"
    assert q.empty()


def test_idle_keypad_drives_all_rows_low_and_waits(keypad):
    reader, q = keypad
    assert all(reader.factory.pin(p).state == 0 for p in ROWS)
    assert reader._pressed.is_set() is False      # blocked on the column edge, not polling


def test_keys_entered_on_the_keypad_open_the_door(cfg, keys, clock, factory, tmp_path):
    """Keypad -> PIN entry in the core -> decide -> relay, end to end in process."""
    from concurrent.futures import Future
    from accessd.engine import Engine
    from accessd.hw.gpio import DoorOutputs
    from accessd.storage.eventlog import EventLog, LogWriter
    from accessd.storage.whitelist import Whitelist
    from accessd.storage.whitelist_admin import WhitelistAdmin
    admin = WhitelistAdmin(cfg.storage.whitelist_path, keys)
    admin.enroll("pin", "2468", "12A-1")
    logw = LogWriter(EventLog(cfg.storage.eventlog_path, cfg.door.id), wall=clock.wall)
    logw.start()
    out = DoorOutputs(cfg.gpio, cfg.door.fail_mode, factory)
    engine = Engine(cfg, Whitelist(cfg.storage.whitelist_path, keys), out, logw, clock)
    q = queue.Queue()
    reader = MatrixKeypadReader(
        ReaderConfig("keypad", "keypad-matrix", {"row_pins": [7, 8, 9, 10], "col_pins": [11, 25, 26],
                                                 "keys": ["123", "456", "789", "*0#"],
                                                 "debounce_ms": 0}),
        q.put, clock, factory=factory)
    reader.start()
    try:
        assert reader.opened.wait(5)
        fut = Future()
        reader.sim_keys("2468#", fut)
        for _ in range(5):
            engine.handle(q.get(timeout=5), clock.monotonic())
        assert fut.result(5)["decision"] == "granted"
        assert factory.pin(cfg.gpio.relay_pin).state == 1
    finally:
        reader.stop()
        logw.stop()
        out.close()


def test_pin_in_use_is_a_fault_then_recovers(factory):
    q = queue.Queue()
    blocker = DigitalOutputDevice(COLS[1], pin_factory=factory)
    r = make(factory, q)
    try:
        ev = q.get(timeout=5)
        assert ev.kind == "reader.fault" and "cannot open" in ev.detail
        blocker.close()
        assert q.get(timeout=5).kind == "reader.recovered"
        assert type_keys(r, q, "8") == "8"
    finally:
        r.stop()


def test_a_column_pulled_low_by_noise_is_a_bad_frame_not_a_key(keypad):
    reader, q = keypad
    reader.peer.short(2)                  # shorted to ground: low whatever the rows do
    ev = q.get(timeout=5)
    assert ev.kind == "reader.bad_frame" and "column 3 (GPIO20) is low with no row driven" in ev.detail
    reader.peer.short(2, False)
    wait_until(reader.idle.is_set, what="the keypad to re-arm")
    assert type_keys(reader, q, "9") == "9"
