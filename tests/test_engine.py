"""The core engine with a fake clock, gpiozero MockFactory pins, and real SQLite files."""

from concurrent.futures import Future

import pytest

from accessd.core.events import (CaptureRequest, CredentialPresented, InputChanged, KeyPressed,
                                 RemoteUnlock, StatusRequest)
from accessd.engine import Engine
from accessd.hw.gpio import DoorOutputs
from accessd.storage.eventlog import EventLog, LogWriter, open_reader, verify_chain
from accessd.storage.whitelist import Whitelist
from accessd.storage.whitelist_admin import WhitelistAdmin

UID = "04A1B2C3"


class Door:
    def __init__(self, cfg, keys, clock, factory):
        self.cfg, self.clock, self.factory = cfg, clock, factory
        self.admin = WhitelistAdmin(cfg.storage.whitelist_path, keys)
        self.wl = Whitelist(cfg.storage.whitelist_path, keys)
        self.log = EventLog(cfg.storage.eventlog_path, cfg.door.id)
        self.logw = LogWriter(self.log, wall=clock.wall)
        self.logw.start()
        self.out = DoorOutputs(cfg.gpio, cfg.door.fail_mode, factory)
        self.engine = Engine(cfg, self.wl, self.out, self.logw, clock)

    def pin(self, n):
        return self.factory.pin(n).state

    @property
    def relay(self):
        return self.pin(self.cfg.gpio.relay_pin)

    def tap(self, uid=UID, kind="nfc"):
        fut = Future()
        self.engine.handle(CredentialPresented("front", kind, uid, fut), self.clock.monotonic())
        return fut.result(5)

    def advance(self, seconds):
        self.clock.advance(seconds)
        self.engine.tick(self.clock.monotonic())

    def events(self):
        assert self.logw.last_future is None or self.logw.last_future.result(5)
        return [dict(r) for r in open_reader(self.cfg.storage.eventlog_path).execute(
            "SELECT kind, credential, reason FROM events ORDER BY seq")]

    def close(self):
        self.logw.stop()
        self.out.close()


@pytest.fixture
def door(cfg, keys, clock, factory):
    d = Door(cfg, keys, clock, factory)
    yield d
    d.close()


def test_granted_tap_drives_relay_until_unlock_time_then_relocks(door):
    rec = door.admin.enroll("nfc", UID, "12A-1")
    assert door.relay == 0
    reply = door.tap()
    assert reply["decision"] == "granted" and reply["credential"] == rec.credential_id
    assert reply["seq"] >= 1
    assert door.relay == 1 and door.pin(door.cfg.gpio.led_green_pin) == 1
    door.advance(4.9)
    assert door.relay == 1
    door.advance(0.1)
    assert door.relay == 0
    kinds = [e["kind"] for e in door.events()]
    assert kinds == ["access.granted", "door.locked"]


def test_unknown_tap_is_denied_with_red_feedback_and_a_fingerprint_only(door):
    reply = door.tap("04DEAD00")
    assert reply["decision"] == "denied" and reply["reason"] == "denied: unknown credential"
    assert door.relay == 0 and door.pin(door.cfg.gpio.led_red_pin) == 1
    ev = door.events()[-1]
    assert ev["credential"].startswith("fp:") and "04DEAD00" not in ev["credential"]
    door.advance(1.0)
    assert door.pin(door.cfg.gpio.led_red_pin) == 0


def test_expired_credential_is_denied(door, clock):
    door.admin.enroll("nfc", UID, "visitor", valid_until=clock.wall() + 60)
    assert door.tap()["decision"] == "granted"
    clock.advance(61)
    reply = door.tap()
    assert reply["decision"] == "denied" and reply["reason"].startswith("denied: expired")


def test_pin_typed_on_keypad(door):
    door.admin.enroll("pin", "4321", "12A-1")
    fut = Future()
    for k in "4321":
        door.engine.handle(KeyPressed("front", k), door.clock.monotonic())
    door.engine.handle(KeyPressed("front", "#", fut), door.clock.monotonic())
    assert fut.result(5)["decision"] == "granted" and door.relay == 1


def test_pin_timeout_is_logged(door):
    door.engine.handle(KeyPressed("front", "1"), door.clock.monotonic())
    assert door.engine.deadline() == door.clock.monotonic() + 5
    door.advance(5)
    assert door.events()[-1]["kind"] == "pin.timeout"


def test_forced_door_and_held_open_alarms_sound_the_buzzer(door):
    buzzer = door.cfg.gpio.buzzer_pin
    door.engine.handle(InputChanged("door", True), door.clock.monotonic())
    assert door.pin(buzzer) == 1 and door.events()[-1]["kind"] == "door.forced"
    door.engine.handle(InputChanged("door", False), door.clock.monotonic())
    assert door.pin(buzzer) == 0
    door.admin.enroll("nfc", UID, "x")
    door.tap()
    door.advance(0.5)
    door.engine.handle(InputChanged("door", True), door.clock.monotonic())
    assert door.pin(buzzer) == 0
    door.advance(20)   # pre-alarm at 30 - 10 s
    assert door.pin(buzzer) == 1 and door.events()[-1]["kind"] == "door.prealarm"
    door.advance(10)
    assert door.events()[-1]["kind"] == "door.held_open"


def test_rex_and_remote_unlock(door):
    door.engine.handle(InputChanged("rex", True), door.clock.monotonic())
    assert door.relay == 1
    door.advance(5)
    fut = Future()
    door.engine.handle(RemoteUnlock("uid 1000 (staff)", fut), door.clock.monotonic())
    assert fut.result(5)["relay"] == "unlocked" and door.relay == 1
    kinds = [(e["kind"], e["reason"]) for e in door.events()]
    assert ("rex", "unlocked by request-to-exit button") in kinds
    assert ("unlock.remote", "remote unlock by uid 1000 (staff)") in kinds


def test_capture_takes_the_next_card_and_still_decides_it(door):
    cap = Future()
    door.engine.handle(CaptureRequest(30, cap), door.clock.monotonic())
    reply = door.tap("04CAFE00")                          # a new card: captured, and denied
    assert reply["decision"] == "denied" and reply["captured"] == reply["credential"]
    assert door.relay == 0
    assert cap.result(5)["value"] == "04CAFE00"
    assert [e["kind"] for e in door.events()] == ["enrol.captured", "access.denied"]
    door.admin.enroll("nfc", UID, "12A-1")
    cap = Future()
    door.engine.handle(CaptureRequest(30, cap), door.clock.monotonic())
    assert door.tap()["decision"] == "granted" and door.relay == 1   # the resident gets in
    assert cap.result(5)["value"] == UID


def test_capture_never_takes_a_pin(door):
    door.admin.enroll("pin", "2468", "12A-1")
    cap = Future()
    door.engine.handle(CaptureRequest(30, cap), door.clock.monotonic())
    reply = door.tap("2468", kind="pin")
    assert reply["decision"] == "granted" and "captured" not in reply and door.relay == 1
    assert not cap.done()                                  # still waiting for a card
    door.tap("04CAFE00")
    assert cap.result(5)["kind"] == "nfc"
    assert "2468" not in str(door.events())


def test_capture_times_out(door):
    cap = Future()
    door.engine.handle(CaptureRequest(30, cap), door.clock.monotonic())
    door.advance(30)
    assert cap.result(5) == {"ok": False, "error": "no credential presented in time"}


def test_unreadable_row_denies_and_the_door_keeps_going(door):
    import sqlite3
    door.admin.enroll("nfc", UID, "x")
    door.admin.enroll("nfc", "04000001", "y")
    with sqlite3.connect(door.cfg.storage.whitelist_path) as c:
        c.execute("UPDATE credentials SET sealed = zeroblob(40)")
    reply = door.tap()
    assert reply["decision"] == "denied" and reply["reason"] == "denied: whitelist unreadable"
    st = Future()
    door.engine.handle(StatusRequest(st), door.clock.monotonic())
    assert st.result(5)["counters"]["denied"] == 1


def test_fail_safe_door_energises_to_lock(cfg, keys, clock, factory):
    import dataclasses
    safe_cfg = dataclasses.replace(cfg, door=dataclasses.replace(cfg.door, fail_mode="safe"))
    d = Door(safe_cfg, keys, clock, factory)
    try:
        d.admin.enroll("nfc", UID, "x")
        assert d.relay == 1            # maglock powered = locked
        d.tap()
        assert d.relay == 0            # released
        d.out.safe()
        assert d.relay == 0
    finally:
        d.close()


def test_active_low_relay_board(cfg, keys, clock, factory):
    import dataclasses
    low = dataclasses.replace(cfg, gpio=dataclasses.replace(cfg.gpio, relay_active_high=False))
    d = Door(low, keys, clock, factory)
    try:
        d.admin.enroll("nfc", UID, "x")
        assert d.relay == 1            # idle high on an active-low board: off
        d.tap()
        assert d.relay == 0
    finally:
        d.close()


def test_log_chain_is_intact_after_a_busy_session(door):
    door.admin.enroll("nfc", UID, "x")
    for i in range(50):
        door.tap(UID if i % 2 else f"04{i:06X}")
        door.advance(0.5)
    door.events()
    assert verify_chain(open_reader(door.cfg.storage.eventlog_path)).ok
