"""Policy at the door (fake clock, real files): duress, PIN lockout, stranger alert,
temporary passes on a stale whitelist."""

import dataclasses
from concurrent.futures import Future

import pytest

from accessd.core.events import CredentialPresented, KeyPressed
from accessd.engine import Engine
from accessd.hw.gpio import DoorOutputs
from accessd.storage.crypto import lookup_digest
from accessd.storage.eventlog import EventLog, LogWriter, open_reader
from accessd.storage.whitelist import Whitelist
from accessd.storage.whitelist_admin import build_whitelist_file


def row(cid, kind, role="resident", **extra):
    return {"id": cid, "kind": kind, "holder": "p-" + cid, "assurance": "low",
            "status": "active", "from": None, "until": None, "role": role, **extra}


@pytest.fixture
def door(cfg, keys, clock, factory):
    cfg = dataclasses.replace(cfg, policy=dataclasses.replace(
        cfg.policy, pin_lockout_attempts=3, pin_lockout_seconds=60, stranger_attempts=4,
        stranger_window_seconds=60, temporary_max_age_hours=24, unsynced_clock="residents"))
    cfg.storage.data_dir.mkdir(parents=True, exist_ok=True)
    creds = [("nfc", "04A1B2C3", row("c-anna", "nfc")),
             ("pin", "2468", row("c-pin", "pin")),
             ("pin", "8642", row("c-duress", "pin", duress=True)),
             ("nfc", "04C0C0C0", row("c-van", "nfc", role="courier"))]
    issued = clock.wall() - 3600
    build_whitelist_file(cfg.storage.whitelist_path,
                         ((lookup_digest(keys.lookup, k, v), r) for k, v, r in creds),
                         lookup_key=keys.lookup, seal_key=keys.seal,
                         meta={"version": "1", "site": "s", "issued": str(issued)})
    logw = LogWriter(EventLog(cfg.storage.eventlog_path, cfg.door.id), wall=clock.wall)
    logw.start()
    out = DoorOutputs(cfg.gpio, cfg.door.fail_mode, factory)
    engine = Engine(cfg, Whitelist(cfg.storage.whitelist_path, keys), out, logw, clock)

    class D:
        pass
    d = D()
    d.engine, d.clock, d.cfg, d.factory = engine, clock, cfg, factory

    def pin(keys_typed):
        fut = Future()
        for k in keys_typed[:-1]:
            engine.handle(KeyPressed("keypad", k), clock.monotonic())
        engine.handle(KeyPressed("keypad", keys_typed[-1], fut), clock.monotonic())
        return fut.result(5)

    def tap(uid):
        fut = Future()
        engine.handle(CredentialPresented("front", "nfc", uid, fut), clock.monotonic())
        return fut.result(5)

    def events():
        logw.last_future.result(5)
        return [(r["kind"], r["reason"]) for r in open_reader(cfg.storage.eventlog_path).execute(
            "SELECT kind, reason FROM events ORDER BY seq")]
    d.pin, d.tap, d.events = pin, tap, events
    yield d
    logw.stop()
    out.close()


def test_duress_pin_opens_and_raises_a_silent_alarm(door):
    normal = door.pin("2468#")
    door.clock.advance(10)
    buzzer_before = door.factory.pin(door.cfg.gpio.buzzer_pin).state
    r = door.pin("8642#")
    assert r["decision"] == "granted" and r["reason"] == "granted"   # looks like any PIN
    assert normal["relay"] == r["relay"] == "unlocked"
    assert ("alarm.duress", "duress PIN used") in door.events()
    # silent: the outputs are those of a normal grant
    assert door.factory.pin(door.cfg.gpio.buzzer_pin).state == buzzer_before


def test_pin_lockout_escalates_and_cards_keep_working(door):
    for _ in range(3):
        assert door.pin("1111#")["reason"] == "denied: wrong PIN"
        door.clock.advance(1)
    assert ("pin.lockout", "3 wrong PINs: keypad locked for 60 s") in door.events()
    r = door.pin("2468#")                          # even the right PIN waits
    assert r["decision"] == "denied" and r["reason"].startswith("denied: pin lockout")
    assert door.tap("04A1B2C3")["decision"] == "granted"          # cards keep working
    door.clock.advance(60)
    for _ in range(3):
        door.pin("1111#")
        door.clock.advance(1)
    assert ("pin.lockout", "3 wrong PINs: keypad locked for 120 s") in door.events()
    door.clock.advance(120)
    assert door.pin("2468#")["decision"] == "granted"


def test_stranger_alert_after_repeated_denials(door):
    for uid in ("04000001", "04000002", "04000003"):
        door.tap(uid)
        door.clock.advance(5)
    assert not [e for e in door.events() if e[0] == "alarm.stranger"]
    r = door.tap("04000004")
    assert ("alarm.stranger", "4 denied attempts within 60 s") in door.events()
    # the reply names the request's own record, not the alarm logged after it
    kinds = door.events()
    assert kinds[r["seq"] - 1][0] == "access.denied" and kinds[r["seq"]][0] == "alarm.stranger"


def test_temporary_passes_fail_closed_on_a_stale_whitelist(door):
    assert door.tap("04C0C0C0")["decision"] == "granted"           # an hour old: fine
    door.clock.advance(24 * 3600)                                  # the office went quiet
    r = door.tap("04C0C0C0")
    assert r["reason"] == "denied: whitelist too old for a temporary pass (25 h, at most 24 h)"
    assert door.tap("04A1B2C3")["decision"] == "granted"           # residents keep working


def test_duress_only_for_pins(tmp_path):
    from accessd.errors import StoreError
    from accessd.site.db import SiteDB
    site = SiteDB.init(tmp_path / "site", "s")
    pid = site.person_add("A", "1", "resident")
    with pytest.raises(StoreError, match="only a PIN can be a duress credential"):
        site.credential_add(pid, "nfc", "04A1B2C3", duress=True)
    cid = site.credential_add(pid, "pin", "8642", duress=True)["id"]
    assert site.door_row(cid)["duress"] is True


def test_unsynchronised_clock_policy(door):
    door.clock.is_synced = False
    r = door.tap("04C0C0C0")      # a courier pass with no window or schedule:
    assert r["decision"] == "granted"   # the clock does not matter to it
    door.clock.is_synced = True
    door.tap("04A1B2C3")
    kinds = [k for k, _ in door.events()]
    assert ("clock.unsynced", "system clock is not synchronised: credentials limited in time "
            "follow policy 'residents'") in door.events()
    assert kinds.index("clock.unsynced") < kinds.index("clock.synced")


def test_decide_with_an_unsynchronised_clock():
    from accessd.core import decide as dd
    from accessd.core.credentials import CredentialRecord
    visitor = CredentialRecord("c", "nfc", "p", "low", "active", None, 2e9, "visitor")
    resident = CredentialRecord("c", "nfc", "p", "low", "active", None, 2e9, "resident")
    plain = CredentialRecord("c", "nfc", "p", "low", "active", None, None, "visitor")
    now = 1.79e9
    assert dd.decide(visitor, "normal", now, clock_synced=False, unsynced="deny").reason == \
        "denied: clock not synchronised"
    assert dd.decide(visitor, "normal", now, clock_synced=False, unsynced="residents").reason == \
        "denied: clock not synchronised (residents only)"
    assert dd.decide(resident, "normal", now, clock_synced=False, unsynced="residents").granted
    assert dd.decide(plain, "normal", now, clock_synced=False, unsynced="deny").granted
    assert dd.decide(visitor, "normal", now, clock_synced=False, unsynced="trust").granted
    assert dd.decide(visitor, "normal", now, clock_synced=True, unsynced="deny").granted


def test_kernel_clock_state_is_read_once_a_minute_not_per_tap(mocker):
    from accessd import clock as clock_mod
    reads = mocker.patch.object(clock_mod, "read_sync_state", side_effect=[
        clock_mod.SyncState(False, "kernel"), clock_mod.SyncState(True, "kernel")])
    mono = mocker.patch.object(clock_mod.time, "monotonic", return_value=100.0)
    c = clock_mod.SystemClock()
    assert [c.synced() for _ in range(50)] == [False] * 50      # 50 taps, one syscall
    assert reads.call_count == 1
    mono.return_value = 160.0                                  # a minute later: read again
    assert c.synced() is True and reads.call_count == 2


def test_kernel_clock_state_read_for_real():
    """adjtimex(2) read-only works unprivileged; its answer matches STA_UNSYNC."""
    from accessd import clock as clock_mod
    rc, status = clock_mod.adjtimex_read()
    state = clock_mod.read_sync_state()
    assert state.source == "kernel" and state.error is None
    assert state.synced == (rc != clock_mod.TIME_ERROR and not status & clock_mod.STA_UNSYNC)


def test_a_refused_clock_query_is_reported_and_falls_back_to_timesyncd(tmp_path):
    """A seccomp filter (systemd's ProtectClock=) answers adjtimex with EPERM: that is
    not "unsynchronised"; systemd-timesyncd's flag file is asked instead."""
    import errno

    from accessd.clock import read_sync_state

    def refused():
        raise OSError(errno.EPERM, "Operation not permitted")
    flag = tmp_path / "synchronized"
    state = read_sync_state(refused, flag)
    assert state.as_dict() == {"synced": False, "source": "none",
                               "error": "adjtimex refused (EPERM: Operation not permitted)"}
    flag.touch()                                  # timesyncd has set the clock since boot
    state = read_sync_state(refused, flag)
    assert (state.synced, state.source) == (True, "timesyncd") and "EPERM" in state.error


def test_the_door_logs_a_clock_it_cannot_read(door):
    from accessd.clock import SyncState
    door.clock.sync_state = lambda: SyncState(False, "none", "adjtimex refused (EPERM: x)")
    door.tap("04C0C0C0")
    door.tap("04C0C0C0")
    evs = door.events()
    assert evs.count(("clock.check_failed", "cannot read the kernel's clock state: adjtimex "
                      "refused (EPERM: x); taken as not synchronised")) == 1
    assert door.engine.status()["clock"] == {"synced": False, "source": "none", "policy": "residents",
                                      "error": "adjtimex refused (EPERM: x)"}


@pytest.fixture
def card_pin_door(cfg, keys, clock, factory, request):
    """A door with anna's card and PIN, bob's PIN, and card_pin from the test's param."""
    cfg = dataclasses.replace(cfg, policy=dataclasses.replace(
        cfg.policy, card_pin=request.param, card_pin_timeout_seconds=10))
    cfg.storage.data_dir.mkdir(parents=True, exist_ok=True)
    creds = [("nfc", "04A1B2C3", row("c-card", "nfc", holder="anna")),
             ("pin", "2468", row("c-pin", "pin", holder="anna")),
             ("pin", "1357", row("c-bob", "pin", holder="bob"))]
    policy = {"tz": "UTC", "schedules": {"night": {"daily": ["22:00-06:00"]}}, "holidays": {}}
    import json as _json
    build_whitelist_file(cfg.storage.whitelist_path,
                         ((lookup_digest(keys.lookup, k, v), r) for k, v, r in creds),
                         lookup_key=keys.lookup, seal_key=keys.seal,
                         meta={"version": "1", "policy": _json.dumps(policy)})
    logw = LogWriter(EventLog(cfg.storage.eventlog_path, cfg.door.id), wall=clock.wall)
    logw.start()
    out = DoorOutputs(cfg.gpio, cfg.door.fail_mode, factory)
    engine = Engine(cfg, Whitelist(cfg.storage.whitelist_path, keys), out, logw, clock)

    def handle(item):
        fut = Future()
        item = dataclasses.replace(item, reply=fut)
        engine.handle(item, clock.monotonic())
        return fut.result(5)

    def pin(keys_typed):
        for k in keys_typed[:-1]:
            engine.handle(KeyPressed("keypad", k), clock.monotonic())
        return handle(KeyPressed("keypad", keys_typed[-1]))

    class D:
        relay = property(lambda self: factory.pin(cfg.gpio.relay_pin).state)
    d = D()
    d.tap = lambda uid: handle(CredentialPresented("front", "nfc", uid))
    d.pin, d.clock, d.engine = pin, clock, engine

    def events():
        logw.last_future.result(5)
        return [(r["kind"], r["reason"]) for r in open_reader(cfg.storage.eventlog_path).execute(
            "SELECT kind, reason FROM events ORDER BY seq")]
    d.events = events
    yield d
    logw.stop()
    out.close()


@pytest.mark.parametrize("card_pin_door", ["always"], indirect=True)
def test_card_then_the_holders_pin_opens(card_pin_door):
    d = card_pin_door
    r = d.tap("04A1B2C3")
    assert r["decision"] == "pending" and d.relay == 0          # the card alone does not open
    r = d.pin("2468#")
    assert r["decision"] == "granted" and r["reason"] == "granted: card+PIN" and d.relay == 1
    assert ("access.pending", "card accepted; PIN required") in d.events()


@pytest.mark.parametrize("card_pin_door", ["always"], indirect=True)
def test_card_pin_refusals(card_pin_door):
    d = card_pin_door
    d.tap("04A1B2C3")
    assert d.pin("1357#")["reason"] == "denied: PIN does not match the card"   # bob's PIN
    assert d.pin("2468#")["reason"] == "denied: card+PIN required"            # a PIN alone
    d.tap("04A1B2C3")
    d.clock.advance(10)
    d.engine.tick(d.clock.monotonic())
    assert ("access.denied", "denied: no PIN after the card") in d.events()
    assert d.relay == 0


@pytest.mark.parametrize("card_pin_door", ["night"], indirect=True)
def test_card_pin_only_while_its_schedule_is_open(card_pin_door):
    from datetime import datetime, timezone
    d = card_pin_door
    noon = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc).timestamp()
    d.clock.advance(noon - d.clock.wall())
    assert d.tap("04A1B2C3")["decision"] == "granted"           # by day: the card alone
    d.clock.advance(11 * 3600)                                  # 23:00: card+PIN
    assert d.tap("04A1B2C3")["decision"] == "pending"
    assert d.pin("2468#")["reason"] == "granted: card+PIN"


def test_a_pass_good_for_three_entries(cfg, keys, clock, factory):
    """Counted per door from its own log, so a restart does not give entries back."""
    cfg.storage.data_dir.mkdir(parents=True, exist_ok=True)
    digest = lookup_digest(keys.lookup, "nfc", "04B0B0B0")
    build_whitelist_file(cfg.storage.whitelist_path,
                         [(digest, row("c-visit", "nfc", role="visitor", uses=3))],
                         lookup_key=keys.lookup, seal_key=keys.seal, meta={"version": "1"})

    def door_session(taps):
        logw = LogWriter(EventLog(cfg.storage.eventlog_path, cfg.door.id), wall=clock.wall)
        logw.start()
        out = DoorOutputs(cfg.gpio, cfg.door.fail_mode, factory)
        engine = Engine(cfg, Whitelist(cfg.storage.whitelist_path, keys), out, logw, clock)
        reasons = []
        for _ in range(taps):
            fut = Future()
            engine.handle(CredentialPresented("front", "nfc", "04B0B0B0", fut), clock.monotonic())
            reasons.append(fut.result(5)["reason"])
            clock.advance(10)
        logw.stop()
        out.close()
        return reasons
    assert door_session(2) == ["granted (entry 1 of 3)", "granted (entry 2 of 3)"]
    assert door_session(2) == ["granted (entry 3 of 3)", "denied: pass used up (3 of 3 entries)"]


def test_uses_are_set_at_the_office(tmp_path):
    from accessd.errors import StoreError
    from accessd.site.db import SiteDB
    site = SiteDB.init(tmp_path / "site", "s")
    pid = site.person_add("V", "", "visitor")
    cid = site.credential_add(pid, "nfc", "04B0B0B0", max_uses=10)["id"]
    assert site.door_row(cid)["uses"] == 10
    with pytest.raises(StoreError, match="uses must be 1-100000"):
        site.credential_add(pid, "fob", "5", max_uses=0)


def test_door_held_open_by_a_schedule(cfg, keys, clock, factory):
    from datetime import datetime, timezone
    import json as _json
    cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy,
                                                              held_open_schedule="moving"))
    cfg.storage.data_dir.mkdir(parents=True, exist_ok=True)
    policy = {"tz": "UTC", "schedules": {"moving": {"sat": ["09:00-12:00"]}}, "holidays": {}}
    build_whitelist_file(cfg.storage.whitelist_path, [], lookup_key=keys.lookup,
                         seal_key=keys.seal, meta={"version": "1", "policy": _json.dumps(policy)})
    clock.advance(datetime(2026, 11, 28, 8, 59, tzinfo=timezone.utc).timestamp() - clock.wall())
    logw = LogWriter(EventLog(cfg.storage.eventlog_path, cfg.door.id), wall=clock.wall)
    logw.start()
    out = DoorOutputs(cfg.gpio, cfg.door.fail_mode, factory)
    engine = Engine(cfg, Whitelist(cfg.storage.whitelist_path, keys), out, logw, clock)
    relay = factory.pin(cfg.gpio.relay_pin)
    try:
        engine.tick(clock.monotonic())
        assert relay.state == 0                      # Saturday 08:59
        clock.advance(60)
        engine.tick(clock.monotonic())
        assert relay.state == 1                      # 09:00: held open for moving day
        assert engine.deadline() == clock.monotonic() + 60   # checked once a minute
        clock.advance(3 * 3600)
        engine.tick(clock.monotonic())
        assert relay.state == 0                      # 12:00: locked again
        logw.last_future.result(5)
        reasons = [r["reason"] for r in open_reader(cfg.storage.eventlog_path).execute(
            "SELECT reason FROM events WHERE kind = 'door.mode'")]
        assert reasons == ["held open by schedule 'moving'",
                           "schedule 'moving' ended: door no longer held open"]
    finally:
        logw.stop()
        out.close()
