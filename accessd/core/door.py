"""The door state machine. Pure: (state, input, now) -> (new state, events to log).

Outputs (relay, buzzer, LEDs) are a function of the state, and every timer is a
deadline in the state (`next_deadline`), which the core waits on. `now` is a
monotonic time in seconds; tests pass any numbers they like.

  locked --grant/REX/remote--> unlocked (relay on for unlock_seconds)
  unlocked --unlock time over | door closes after opening--> locked
  door opens while locked, no grant  -> door.forced alarm
  door open past held_open_seconds   -> door.held_open alarm (pre-alarm buzzer before it)
  tamper input                       -> tamper alarm
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GRANT_FEEDBACK_S = 0.3
DENY_FEEDBACK_S = 1.0


@dataclass(frozen=True)
class DoorSettings:
    unlock_seconds: float
    held_open_seconds: float
    prealarm_seconds: float


@dataclass(frozen=True)
class Emit:
    kind: str
    reason: str


@dataclass(frozen=True)
class Outputs:
    relay_unlocked: bool
    buzzer: bool
    green: bool
    red: bool


@dataclass(frozen=True)
class DoorState:
    unlocked_until: float | None = None
    door_open: bool = False
    opened_at: float | None = None
    prealarm: bool = False
    held_alarm: bool = False
    forced: bool = False
    tamper: bool = False
    feedback: str | None = None  # "grant" | "deny"
    feedback_until: float | None = None
    hold_open: bool = False  # held-open mode or fire release: unlocked until lifted

    @property
    def locked(self) -> bool:
        return self.unlocked_until is None and not self.hold_open


# Inputs
@dataclass(frozen=True)
class Unlock:
    """A grant, a REX press or a remote unlock."""


@dataclass(frozen=True)
class Deny:
    pass


@dataclass(frozen=True)
class DoorContact:
    open: bool


@dataclass(frozen=True)
class Tamper:
    active: bool


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class HoldOpen:
    """Held-open mode or an emergency (fire) release: on keeps the lock released."""
    on: bool


def outputs(s: DoorState) -> Outputs:
    alarm = s.forced or s.held_alarm or s.tamper
    unlocked = s.unlocked_until is not None or s.hold_open
    return Outputs(relay_unlocked=unlocked,
                   buzzer=s.feedback is not None or s.prealarm or alarm,
                   green=unlocked,
                   red=s.feedback == "deny" or alarm)


def _held_deadline(s: DoorState, cfg: DoorSettings) -> float | None:
    return None if s.opened_at is None else s.opened_at + cfg.held_open_seconds


def _prealarm_deadline(s: DoorState, cfg: DoorSettings) -> float | None:
    if s.opened_at is None or cfg.prealarm_seconds <= 0:
        return None
    return s.opened_at + cfg.held_open_seconds - cfg.prealarm_seconds


def next_deadline(s: DoorState, cfg: DoorSettings) -> float | None:
    candidates = [s.unlocked_until, s.feedback_until]
    if s.door_open and not s.held_alarm and not s.hold_open:
        candidates.append(_held_deadline(s, cfg))
        if not s.prealarm:
            candidates.append(_prealarm_deadline(s, cfg))
    live = [c for c in candidates if c is not None]
    return min(live) if live else None


def step(s: DoorState, event, now: float, cfg: DoorSettings) -> tuple[DoorState, list[Emit]]:
    """Apply one input, then any deadline that has passed by `now`."""
    emits: list[Emit] = []
    if isinstance(event, Unlock):
        s = replace(s, unlocked_until=now + cfg.unlock_seconds, feedback="grant",
                    feedback_until=now + GRANT_FEEDBACK_S)
    elif isinstance(event, Deny):
        s = replace(s, feedback="deny", feedback_until=now + DENY_FEEDBACK_S)
    elif isinstance(event, DoorContact):
        if event.open and not s.door_open:
            s = replace(s, door_open=True, opened_at=now, prealarm=False, held_alarm=False)
            if s.locked:
                s = replace(s, forced=True)
                emits.append(Emit("door.forced", "door opened while locked, without a grant"))
            else:
                emits.append(Emit("door.opened", "opened after unlock"))
        elif not event.open and s.door_open:
            was = ("after being held open" if s.held_alarm else
                   "after a forced opening" if s.forced else "")
            s = replace(s, door_open=False, opened_at=None, prealarm=False,
                        held_alarm=False, forced=False)
            emits.append(Emit("door.closed", was or "closed"))
            if s.unlocked_until is not None and not s.hold_open:
                s = replace(s, unlocked_until=None)
                emits.append(Emit("door.locked", "relocked: door closed"))
    elif isinstance(event, HoldOpen):
        if event.on != s.hold_open:
            # held-open time counts from the moment the door is no longer held open
            s = replace(s, hold_open=event.on, prealarm=False, held_alarm=False,
                        opened_at=now if s.door_open else None)
            if not event.on and s.unlocked_until is None:
                emits.append(Emit("door.locked", "relocked: hold-open ended"))
    elif isinstance(event, Tamper):
        if event.active != s.tamper:
            s = replace(s, tamper=event.active)
            emits.append(Emit("tamper", "enclosure opened or wiring cut") if event.active
                         else Emit("tamper.cleared", "tamper input back to normal"))
    s, more = _expire(s, now, cfg)
    return s, emits + more


def _expire(s: DoorState, now: float, cfg: DoorSettings) -> tuple[DoorState, list[Emit]]:
    emits: list[Emit] = []
    if s.feedback_until is not None and now >= s.feedback_until:
        s = replace(s, feedback=None, feedback_until=None)
    if s.unlocked_until is not None and now >= s.unlocked_until:
        s = replace(s, unlocked_until=None)
        emits.append(Emit("door.locked", "relocked: unlock time over"))
    if s.door_open and not s.held_alarm and not s.hold_open:
        pre = _prealarm_deadline(s, cfg)
        if not s.prealarm and pre is not None and now >= pre:
            s = replace(s, prealarm=True)
            emits.append(Emit("door.prealarm", f"door open {cfg.held_open_seconds - cfg.prealarm_seconds:g} s; "
                              f"held-open alarm in {cfg.prealarm_seconds:g} s"))
        if now >= _held_deadline(s, cfg):
            s = replace(s, held_alarm=True, prealarm=False)
            emits.append(Emit("door.held_open",
                              f"door open longer than {cfg.held_open_seconds:g} s"))
    return s, emits
