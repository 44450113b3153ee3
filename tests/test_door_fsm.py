"""The door state machine, driven with plain numbers for time."""

from accessd.core import door as fsm

CFG = fsm.DoorSettings(unlock_seconds=5, held_open_seconds=30, prealarm_seconds=10)


def run(state, events):
    """Apply (event, now) pairs; return final state and all emitted kinds."""
    kinds = []
    for ev, now in events:
        state, emits = fsm.step(state, ev, now, CFG)
        kinds += [e.kind for e in emits]
    return state, kinds


def test_grant_unlocks_then_relocks_after_unlock_time():
    s, kinds = run(fsm.DoorState(), [(fsm.Unlock(), 0)])
    assert fsm.outputs(s).relay_unlocked and fsm.outputs(s).green
    assert fsm.next_deadline(s, CFG) == fsm.GRANT_FEEDBACK_S
    s, kinds = run(s, [(fsm.Tick(), 4.9)])
    assert fsm.outputs(s).relay_unlocked
    s, kinds = run(s, [(fsm.Tick(), 5.0)])
    assert not fsm.outputs(s).relay_unlocked
    assert kinds == ["door.locked"]


def test_relocks_as_soon_as_door_closes_after_opening():
    s, kinds = run(fsm.DoorState(), [(fsm.Unlock(), 0), (fsm.DoorContact(True), 1),
                                      (fsm.DoorContact(False), 2)])
    assert s.locked
    assert kinds == ["door.opened", "door.closed", "door.locked"]


def test_door_opened_while_locked_is_forced():
    s, kinds = run(fsm.DoorState(), [(fsm.DoorContact(True), 0)])
    assert kinds == ["door.forced"]
    out = fsm.outputs(s)
    assert out.buzzer and out.red and not out.relay_unlocked
    s, kinds = run(s, [(fsm.DoorContact(False), 3)])
    assert kinds == ["door.closed"] and not fsm.outputs(s).buzzer


def test_opening_after_relock_is_forced():
    s, kinds = run(fsm.DoorState(), [(fsm.Unlock(), 0), (fsm.Tick(), 5), (fsm.DoorContact(True), 6)])
    assert kinds == ["door.locked", "door.forced"]


def test_held_open_prealarm_then_alarm():
    s, kinds = run(fsm.DoorState(), [(fsm.Unlock(), 0), (fsm.DoorContact(True), 1)])
    assert fsm.next_deadline(s, CFG) == 5         # the relock
    s, kinds = run(s, [(fsm.Tick(), 5)])          # relay relocks, door still open
    assert fsm.next_deadline(s, CFG) == 21        # pre-alarm at 1 + 30 - 10
    s, kinds = run(s, [(fsm.Tick(), 21)])
    assert kinds == ["door.prealarm"] and fsm.outputs(s).buzzer and not fsm.outputs(s).red
    s, kinds = run(s, [(fsm.Tick(), 31)])
    assert kinds == ["door.held_open"] and fsm.outputs(s).red
    assert fsm.next_deadline(s, CFG) is None      # alarm stays until the door closes
    s, kinds = run(s, [(fsm.DoorContact(False), 40)])
    assert not fsm.outputs(s).buzzer and kinds == ["door.closed"]


def test_late_tick_raises_held_alarm_without_waiting_for_prealarm_tick():
    s, _ = run(fsm.DoorState(), [(fsm.Unlock(), 0), (fsm.DoorContact(True), 1)])
    s, kinds = run(s, [(fsm.Tick(), 100)])
    assert "door.held_open" in kinds and s.held_alarm


def test_deny_gives_red_feedback_that_ends():
    s, _ = run(fsm.DoorState(), [(fsm.Deny(), 0)])
    assert fsm.outputs(s).red and fsm.outputs(s).buzzer and not fsm.outputs(s).relay_unlocked
    s, _ = run(s, [(fsm.Tick(), fsm.DENY_FEEDBACK_S)])
    assert fsm.outputs(s) == fsm.Outputs(False, False, False, False)


def test_tamper_alarm_and_clear_once_each():
    s, kinds = run(fsm.DoorState(), [(fsm.Tamper(True), 0), (fsm.Tamper(True), 1),
                                      (fsm.Tamper(False), 2)])
    assert kinds == ["tamper", "tamper.cleared"]


def test_second_grant_extends_unlock():
    s, _ = run(fsm.DoorState(), [(fsm.Unlock(), 0), (fsm.Unlock(), 4)])
    s, kinds = run(s, [(fsm.Tick(), 5)])
    assert not s.locked and kinds == []
    s, kinds = run(s, [(fsm.Tick(), 9)])
    assert s.locked


def test_hold_open_keeps_the_lock_released_without_alarms():
    s, kinds = run(fsm.DoorState(), [(fsm.HoldOpen(True), 0), (fsm.DoorContact(True), 1),
                                      (fsm.Tick(), 1000)])
    assert fsm.outputs(s).relay_unlocked and kinds == ["door.opened"]   # not forced, not held
    assert fsm.next_deadline(s, CFG) is None
    s, kinds = run(s, [(fsm.HoldOpen(False), 1001)])
    assert kinds == ["door.locked"] and not fsm.outputs(s).relay_unlocked
    s, kinds = run(s, [(fsm.Tick(), 1001 + 30)])                       # held-open counts anew
    assert kinds == ["door.prealarm", "door.held_open"]
