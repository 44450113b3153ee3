"""Property tests of the pure access pipeline (accessd/core/access.py), and of the
engine that carries it out agreeing with it."""

from __future__ import annotations

from concurrent.futures import Future

from hypothesis import HealthCheck, given, settings, strategies as st

from accessd.core import access, guards
from accessd.core.credentials import CredentialRecord
from accessd.core.decide import PIN_LOCKOUT

LOCK = guards.LockoutSettings(attempts=3, window=300.0, lockout=60.0, lockout_max=900.0)
STRANGER = guards.StrangerSettings(attempts=5, window=120.0)
T0 = 1_790_000_000.0


def cfg(card_pin="never", unsynced="residents"):
    return access.Settings(LOCK, STRANGER, 24.0, unsynced, card_pin, 10.0)


def record(cid="c1", kind="nfc", holder="h1", **kw):
    return CredentialRecord(cid, kind, holder, "low", kw.pop("status", "active"),
                            kw.pop("valid_from", None), kw.pop("valid_until", None), **kw)


def at(t=T0, mode="normal", **kw):
    return access.Situation(mode, t, **kw)


# ---- PIN lockout ---------------------------------------------------------------------
presses = st.lists(st.tuples(st.floats(min_value=0.0, max_value=400.0),   # seconds after the last
                             st.sampled_from(["wrong", "card"])), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(presses)
def test_the_lockout_never_lets_more_guesses_through_than_configured(seq):
    """In any stretch shorter than both the window and the lockout, at most
    `attempts` wrong PINs are looked at; cards keep working throughout."""
    state, now, looked_at = access.AccessState(), 0.0, []
    for gap, what in seq:
        now += gap
        kind = "pin" if what == "wrong" else "nfc"
        rec = None if kind == "pin" else record()
        o = access.present(state, access.Presented("keypad", kind, "fp:x"), rec, at(T0 + now),
                           cfg(), now)
        state = o.state
        if kind == "pin" and not o.reason.startswith(PIN_LOCKOUT):
            assert not o.granted
            looked_at.append(now)
        if kind == "nfc":
            assert o.granted                       # a lockout is the keypad's, not the door's
    span = min(LOCK.window, LOCK.lockout)
    for i, t in enumerate(looked_at):
        assert sum(1 for u in looked_at[i:] if u - t < span) <= LOCK.attempts, looked_at


# ---- a denied credential never reaches the relay ---------------------------------------
records = st.one_of(st.none(), st.builds(
    lambda kind, status, vf, vu, role, duress, uses: record(
        kind=kind, status=status, valid_from=vf, valid_until=vu, role=role,
        duress=duress and kind == "pin", uses=uses),
    st.sampled_from(["nfc", "fob", "pin"]), st.sampled_from(["active", "suspended", "lost"]),
    st.one_of(st.none(), st.floats(T0 - 1e5, T0 + 1e5)),
    st.one_of(st.none(), st.floats(T0 - 1e5, T0 + 1e5)),
    st.sampled_from(["", "resident", "visitor", "courier", "staff"]), st.booleans(),
    st.one_of(st.none(), st.integers(1, 5))))
situations = st.builds(
    lambda mode, synced, age, unreadable: at(mode=mode, clock_synced=synced,
                                              whitelist_age_h=age, unreadable=unreadable),
    st.sampled_from(["normal", "lockdown", "held-open"]), st.booleans(),
    st.one_of(st.none(), st.floats(0, 100)), st.booleans())


@settings(max_examples=500, deadline=None)
@given(rec=records, situation=situations, kind=st.sampled_from(["nfc", "fob", "pin"]),
       card_pin=st.sampled_from(["never", "always"]),
       unsynced=st.sampled_from(["deny", "residents", "trust"]), used=st.integers(0, 6))
def test_only_a_grant_unlocks(rec, situation, kind, card_pin, unsynced, used):
    state = access.AccessState()
    if rec is not None and rec.uses:
        state = state.with_used(rec.credential_id, used)
    o = access.present(state, access.Presented("r", kind, "fp:x"), rec, situation,
                       cfg(card_pin, unsynced), 0.0)
    assert (o.unlock is True) == (o.decision == "granted")
    if o.decision != "granted":
        assert o.unlock in (False, None) and o.reason.startswith(("denied", "card accepted"))
    assert o.records[0].kind == f"access.{o.decision}"
    if rec is None or situation.unreadable or rec.status != "active":
        assert not o.granted and o.decision != "pending"


# ---- card+PIN ----------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(card_holder=st.sampled_from(["anna", "bob", "cy"]),
       pin_holder=st.sampled_from(["anna", "bob", "cy", None]),
       gap=st.floats(0, 20))
def test_card_pin_never_grants_another_holders_pin(card_holder, pin_holder, gap):
    c = cfg("always")
    o = access.present(access.AccessState(), access.Presented("door", "nfc", "fp:c"),
                       record("card-" + card_holder, holder=card_holder), at(), c, 0.0)
    assert o.decision == "pending" and o.unlock is None
    state = o.state
    expired = access.expire(state, gap)
    if expired is not None:                      # the PIN came too late
        assert expired.reason == "denied: no PIN after the card" and expired.unlock is False
        state = expired.state
    pin = None if pin_holder is None else record("pin-" + pin_holder, kind="pin",
                                                   holder=pin_holder)
    o = access.present(state, access.Presented("door", "pin", "fp:p"), pin, at(), c, gap)
    if o.granted:
        assert expired is None and pin_holder == card_holder
        assert o.reason == "granted: card+PIN" and o.credential == "card-" + card_holder
    else:
        assert o.unlock is False


# ---- the engine carries the pipeline out, and agrees with it -----------------------------
_DOOR = {}


def _door():
    """One engine on a real whitelist file and mock pins, built once for the module."""
    if not _DOOR:
        import tempfile
        from pathlib import Path

        from gpiozero.pins.mock import MockFactory

        from accessd.clock import FakeClock
        from accessd.config import load_config
        from accessd.engine import Engine
        from accessd.hw.gpio import DoorOutputs
        from accessd.storage.crypto import lookup_digest
        from accessd.storage.eventlog import EventLog, LogWriter
        from accessd.storage.keys import load_key_file
        from accessd.storage.whitelist import Whitelist
        from accessd.storage.whitelist_admin import build_whitelist_file
        from accessd.testing import write_sim_config
        cfgp = write_sim_config(Path(tempfile.mkdtemp()) / "door")
        conf = load_config(cfgp)
        keys = load_key_file(conf.storage.key_file)
        conf.storage.data_dir.mkdir(parents=True, exist_ok=True)
        clock = FakeClock()
        rows = []
        for i, (role, vu) in enumerate([("resident", None), ("visitor", clock.wall() + 3600),
                                        ("visitor", clock.wall() - 10), ("courier", None)]):
            uid = f"04AA00{i:02X}"
            rows.append((lookup_digest(keys.lookup, "nfc", uid),
                         record(f"c{i}", role=role, valid_until=vu).to_row()))
        build_whitelist_file(conf.storage.whitelist_path, rows, lookup_key=keys.lookup,
                             seal_key=keys.seal, meta={"version": "1", "site": "s",
                                                       "issued": str(clock.wall())})
        logw = LogWriter(EventLog(conf.storage.eventlog_path, conf.door.id), wall=clock.wall)
        logw.start()
        factory = MockFactory()
        out = DoorOutputs(conf.gpio, conf.door.fail_mode, factory)
        eng = Engine(conf, Whitelist(conf.storage.whitelist_path, keys), out, logw, clock)
        _DOOR.update(engine=eng, clock=clock, factory=factory, conf=conf)
    return _DOOR


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(taps=st.lists(st.tuples(st.integers(0, 5), st.floats(0, 8),
                               st.sampled_from(["normal", "lockdown"]), st.booleans()),
                     min_size=1, max_size=12))
def test_the_engine_does_what_the_pipeline_decides(taps):
    """For any taps (known cards, unknown ones, modes, clock states, times), the
    engine's reply is the pipeline's decision for the same situation, and the relay
    is energised only after a grant."""
    from accessd.core.events import CredentialPresented
    d = _door()
    eng, clock, relay = d["engine"], d["clock"], d["factory"].pin(d["conf"].gpio.relay_pin)
    for i, gap, mode, synced in taps:
        clock.advance(gap)
        eng.tick(clock.monotonic())
        eng.mode, clock.is_synced = mode, synced
        uid = f"04AA00{i:02X}"
        before = eng.access
        digest = eng.whitelist.digest("nfc", uid)
        rec = eng.whitelist.lookup(digest)
        wall = clock.wall()
        expect = access.present(
            before, access.Presented("front", "nfc", "x"), rec,
            access.Situation(mode, wall, eng.whitelist.policy, eng.whitelist.age_hours(wall),
                             synced or eng.cfg.policy.unsynced_clock == "trust"),
            eng.access_cfg, clock.monotonic())
        was = relay.state
        fut = Future()
        eng.handle(CredentialPresented("front", "nfc", uid, fut), clock.monotonic())
        r = fut.result(5)
        assert (r["decision"], r["reason"]) == (expect.decision, expect.reason)
        if r["decision"] != "granted":
            assert relay.state == was               # a refusal never moves the relay
        else:
            assert relay.state == 1
