"""The access pipeline: from a presented credential to what the door does. Pure.

`present()` takes the presented credential, its whitelist record (None if
unknown), the door's access state, the situation (mode, time, clock, policy)
and the settings, and returns an `Outcome`: the decision with its reason, the
input for the door state machine (unlock, deny, or none while a card waits for
its PIN), the new access state, and the records to log, the access record
first. No I/O, no threads, no clock of its own; the state is an immutable value
(its parts, like the inputs and the outcome, are frozen: named tuples, cheap to make).
`expire()` is the same for time passing: a card whose PIN never came.

The rules, in order (the first that refuses gives the reason):

1. PIN lockout: a PIN typed on a locked keypad is refused without being looked at.
2. decide(): the record, the door mode, validity, clock, schedule, whitelist age, uses.
3. card+PIN: an accepted card waits for its holder's PIN; a PIN alone is refused;
   the PIN that follows must be the same holder's.
4. Guards, after the decision: a duress PIN's silent alarm, wrong PINs counted
   towards a lockout (a right one clears it), denials counted towards a stranger alert.

The engine (accessd/engine.py) looks the record up, calls this, steps the door
machine, sets the outputs and logs the records; `accessctl explain` calls the
same function, so it cannot disagree with the door.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

from . import guards
from .credentials import CredentialRecord
from .decide import (CARD_PIN_REQUIRED, HIGH_REQUIRED, NO_PIN, NOT_PROVEN, PIN_LOCKOUT,
                     PIN_MISMATCH, UNREADABLE, Decision, decide)
from .schedule import Policy, in_schedule

PENDING = "card accepted; PIN required"
_NO_LOCKOUT = guards.Lockout()


class Presented(NamedTuple):
    reader: str
    kind: str          # nfc | fob | pin | qr
    fingerprint: str   # the log's name for a credential the whitelist does not hold
    assurance: str = "low"   # "high": a secure card proved its keys at the reader
    refusal: str = ""        # why a secure card's check failed, or a QR pass is refused


class PendingCard(NamedTuple):
    record: CredentialRecord
    reader: str
    deadline: float


@dataclass(frozen=True)
class AccessState:
    pending: PendingCard | None = None
    lockouts: tuple[tuple[str, guards.Lockout], ...] = ()   # per keypad reader
    denials: tuple[float, ...] = ()                          # recent denials at this door
    uses: tuple[tuple[str, int], ...] = ()                   # grants of use-counted passes

    def lockout(self, reader: str) -> guards.Lockout:
        if not self.lockouts:
            return _NO_LOCKOUT
        return dict(self.lockouts).get(reader, _NO_LOCKOUT)

    def with_lockout(self, reader: str, lockout: guards.Lockout | None) -> "AccessState":
        rest = tuple((r, lo) for r, lo in self.lockouts if r != reader)
        return replace(self, lockouts=rest if lockout is None else rest + ((reader, lockout),))

    def used(self, credential_id: str) -> int | None:
        """Grants counted for a use-counted pass; None if not known yet (the engine
        then counts them once from its log)."""
        return dict(self.uses).get(credential_id) if self.uses else None

    def with_used(self, credential_id: str, n: int) -> "AccessState":
        rest = tuple((c, k) for c, k in self.uses if c != credential_id)
        return replace(self, uses=rest + ((credential_id, n),))


@dataclass(frozen=True)
class Settings:
    lockout: guards.LockoutSettings
    stranger: guards.StrangerSettings
    temporary_max_age_h: float | None = 24.0
    unsynced: str = "trust"          # deny | residents | trust
    card_pin: str = "never"          # never | always | a schedule's name
    card_pin_timeout: float = 10.0
    high_assurance: str = "never"    # never | always | a schedule's name


def settings_from(pol) -> Settings:
    """Settings from the config's [policy] section."""
    return Settings(
        guards.LockoutSettings(pol.pin_lockout_attempts, pol.pin_lockout_window_seconds,
                               pol.pin_lockout_seconds, pol.pin_lockout_max_seconds),
        guards.StrangerSettings(pol.stranger_attempts, pol.stranger_window_seconds),
        pol.temporary_max_age_hours, pol.unsynced_clock, pol.card_pin,
        pol.card_pin_timeout_seconds, pol.high_assurance)


class Situation(NamedTuple):
    mode: str                        # normal | lockdown | held-open
    wall: float                      # UTC epoch seconds
    policy: Policy | None = None
    whitelist_age_h: float | None = None
    clock_synced: bool = True
    unreadable: bool = False         # the whitelist could not be read


class LogRecord(NamedTuple):
    kind: str
    reason: str
    credential: str | None = None
    detail: dict | None = None


class Outcome(NamedTuple):
    decision: str                    # granted | denied | pending
    reason: str
    credential: str
    unlock: bool | None              # door machine input: Unlock, Deny, or none (pending)
    state: AccessState
    records: tuple[LogRecord, ...]   # the access record first, then alarms it raised
    assurance: str | None = None

    @property
    def granted(self) -> bool:
        return self.decision == "granted"


def card_pin_required(settings: Settings, policy: Policy | None, wall: float) -> bool:
    return _required(settings.card_pin, policy, wall)


def high_required(settings: Settings, policy: Policy | None, wall: float) -> bool:
    """Does the door take only high-assurance credentials now (a secure card proven)?"""
    return _required(settings.high_assurance, policy, wall)


def _required(mode: str, policy: Policy | None, wall: float) -> bool:
    if mode in ("never", "always"):
        return mode == "always"
    if policy is None or mode not in policy.schedules:
        return True  # the schedule is not known here: ask for the PIN (fail closed)
    return in_schedule(policy, mode, wall)


def present(state: AccessState, p: Presented, record: CredentialRecord | None,
            at: Situation, cfg: Settings, now: float) -> Outcome:
    """Decide one presented credential (rules 1-4 above)."""
    lockout = state.lockout(p.reader)
    if p.kind == "pin" and lockout.active(now):
        left = lockout.locked_until - now
        d = Decision(False, PIN_LOCKOUT if math.isinf(left) else f"{PIN_LOCKOUT} ({left:.0f} s left)")
    elif at.unreadable:
        d = Decision(False, UNREADABLE)
    elif p.kind == "qr" and p.refusal:
        d = Decision(False, p.refusal)   # forged, foreign or revoked: core/passes.py
    elif record is not None and record.card and p.assurance != "high":
        # a secure card's UID without the card's proof: a copy, or a failed read
        d = Decision(False, f"{NOT_PROVEN} ({p.refusal or 'its keys were not checked'})",
                     record.credential_id, "low")
    else:
        used = state.used(record.credential_id) if record is not None and record.uses else 0
        d = decide(record, at.mode, at.wall, p.kind, at.policy,
                   whitelist_age_h=at.whitelist_age_h, temporary_max_age_h=cfg.temporary_max_age_h,
                   clock_synced=at.clock_synced, unsynced=cfg.unsynced, used=used or 0)
        if d.credential_id:   # what this tap proved: a secure card got here only proven
            d = Decision(d.granted, d.reason, d.credential_id, "high" if record.card else "low")
        if d.granted and d.assurance != "high" and high_required(cfg, at.policy, at.wall):
            d = Decision(False, f"{HIGH_REQUIRED} (a {p.kind} is low assurance)",
                         d.credential_id, d.assurance)
    d, state = _card_pin(state, p, d, record, at, cfg)
    if d is None:  # a card accepted: wait for its PIN
        state = replace(state, pending=PendingCard(record, p.reader, now + cfg.card_pin_timeout))
        return Outcome("pending", PENDING, record.credential_id, None, state,
                       (LogRecord("access.pending", PENDING, record.credential_id,
                                  {"reader": p.reader, "kind": p.kind}),), record.assurance)
    cred = d.credential_id or p.fingerprint
    if d.granted and d.credential_id and state.used(d.credential_id) is not None:
        state = state.with_used(d.credential_id, state.used(d.credential_id) + 1)
    records = [LogRecord("access.granted" if d.granted else "access.denied", d.reason, cred,
                         {"reader": p.reader, "kind": p.kind, "assurance": d.assurance})]
    state = _guards(state, p, d, record, cfg, now, cred, records)
    return Outcome("granted" if d.granted else "denied", d.reason, cred, d.granted, state,
                   tuple(records), d.assurance)


def expire(state: AccessState, now: float) -> Outcome | None:
    """A card waiting for its PIN past its deadline: denied, 'no PIN after the card'."""
    pend = state.pending
    if pend is None or now < pend.deadline:
        return None
    card = pend.record
    return Outcome("denied", NO_PIN, card.credential_id, False, replace(state, pending=None),
                   (LogRecord("access.denied", NO_PIN, card.credential_id,
                              {"reader": pend.reader, "kind": card.kind}),), card.assurance)


def _card_pin(state: AccessState, p: Presented, d: Decision, record, at: Situation,
              cfg: Settings) -> tuple[Decision | None, AccessState]:
    """Rule 3. None means 'card accepted, wait for the PIN'."""
    if p.kind == "pin" and state.pending is not None:
        card = state.pending.record
        state = replace(state, pending=None)
        if not d.granted:
            return d, state
        if record is None or record.holder != card.holder:
            return Decision(False, PIN_MISMATCH, card.credential_id, card.assurance), state
        return Decision(True, "granted: card+PIN", card.credential_id, card.assurance), state
    if not d.granted or not card_pin_required(cfg, at.policy, at.wall):
        return d, state
    if p.kind == "pin":
        return Decision(False, CARD_PIN_REQUIRED, d.credential_id, d.assurance), state
    return None, state


def _guards(state: AccessState, p: Presented, d: Decision, record, cfg: Settings, now: float,
            cred: str, records: list[LogRecord]) -> AccessState:
    """Rule 4: appends the alarms to `records`, returns the new state."""
    if d.granted and record is not None and record.duress:
        # silent: the door opens as usual, nothing at the door shows it
        records.append(LogRecord("alarm.duress", "duress PIN used", cred, {"reader": p.reader}))
    if p.kind == "pin" and not d.reason.startswith(PIN_LOCKOUT):
        if d.granted:
            state = state.with_lockout(p.reader, None)
        else:
            lockout, seconds = guards.pin_failed(state.lockout(p.reader), now, cfg.lockout)
            state = state.with_lockout(p.reader, lockout)
            if seconds is not None:
                records.append(LogRecord(
                    "pin.lockout", f"{cfg.lockout.attempts} wrong PINs: keypad locked for "
                                   f"{seconds:g} s", None, {"reader": p.reader}))
    if not d.granted:
        denials, count = guards.denial(state.denials, now, cfg.stranger)
        state = replace(state, denials=denials)
        if count is not None:
            records.append(LogRecord("alarm.stranger", f"{count} denied attempts within "
                                                       f"{cfg.stranger.window:g} s", None,
                                     {"count": count}))
    return state
