"""decide(): is this credential let in, and why. Pure: no I/O, time is an argument."""

from __future__ import annotations

from dataclasses import dataclass

from . import when
from .credentials import TEMPORARY_ROLES, CredentialRecord
from .schedule import Policy, in_schedule

GRANTED = "granted"
UNKNOWN = "denied: unknown credential"
WRONG_PIN = "denied: wrong PIN"
SUSPENDED = "denied: credential suspended"
LOST = "denied: credential reported lost"
NOT_YET = "denied: not valid yet"
EXPIRED = "denied: expired"
LOCKDOWN = "denied: door locked down"
UNREADABLE = "denied: whitelist unreadable"
OUTSIDE = "denied: outside schedule"
PIN_LOCKOUT = "denied: pin lockout"
STALE = "denied: whitelist too old for a temporary pass"
UNSYNCED = "denied: clock not synchronised"
CARD_PIN_REQUIRED = "denied: card+PIN required"
PIN_MISMATCH = "denied: PIN does not match the card"
NO_PIN = "denied: no PIN after the card"
NOT_PROVEN = "denied: secure card failed its key check"
HIGH_REQUIRED = "denied: high-assurance credential required"


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: str
    credential_id: str | None = None
    assurance: str | None = None


def _at(epoch: float, policy: Policy | None, end: bool = False) -> str:
    """In the site's time zone (the office's words), an end of day as 24:00."""
    tz = policy.tz if policy is not None else "UTC"
    return f"{when.fmt(epoch, tz, end=end)} {tz}"


def decide(record: CredentialRecord | None, mode: str, now: float, kind: str = "",
           policy: Policy | None = None, *, whitelist_age_h: float | None = None,
           temporary_max_age_h: float | None = None, clock_synced: bool = True,
           unsynced: str = "trust", used: int = 0) -> Decision:
    """record: the whitelist entry (None = unknown); mode: door mode; now: UTC epoch;
    kind: what was presented (nfc, fob, pin), to word the reason; policy: the
    schedules and holidays from the office; whitelist_age_h: hours since the office
    issued the whitelist, against temporary_max_age_h for visitors, couriers and
    contractors (residents keep working through long outages); clock_synced and
    unsynced: with an unsynchronised clock, credentials limited in time are denied
    ("deny"), allowed for residents and staff only ("residents"), or judged by the
    clock as it is ("trust"); used: entries this pass already made at this door."""
    if record is None:
        return Decision(False, WRONG_PIN if kind == "pin" else UNKNOWN)
    cid, assurance = record.credential_id, record.assurance
    if mode == "lockdown" and record.role != "staff":
        return Decision(False, LOCKDOWN, cid, assurance)
    if record.status == "suspended":
        return Decision(False, SUSPENDED, cid, assurance)
    if record.status == "lost":
        return Decision(False, LOST, cid, assurance)
    if record.status != "active":
        return Decision(False, f"denied: status {record.status!r}", cid, assurance)
    if record.valid_from is not None and now < record.valid_from:
        return Decision(False, f"{NOT_YET} (from {_at(record.valid_from, policy)})", cid, assurance)
    if record.valid_until is not None and now >= record.valid_until:
        return Decision(False, f"{EXPIRED} (ended {_at(record.valid_until, policy, end=True)})", cid, assurance)
    timed = record.valid_from is not None or record.valid_until is not None or record.schedule
    if timed and not clock_synced and unsynced != "trust":
        if unsynced == "deny":
            return Decision(False, UNSYNCED, cid, assurance)
        if record.role not in ("", "resident", "staff"):
            return Decision(False, f"{UNSYNCED} (residents only)", cid, assurance)
    if (record.role in TEMPORARY_ROLES and whitelist_age_h is not None
            and temporary_max_age_h is not None and whitelist_age_h > temporary_max_age_h):
        return Decision(False, f"{STALE} ({whitelist_age_h:.0f} h, at most "
                               f"{temporary_max_age_h:g} h)", cid, assurance)
    if record.uses is not None and used >= record.uses:
        return Decision(False, f"denied: pass used up ({used} of {record.uses} entries)",
                        cid, assurance)
    entry = f" (entry {used + 1} of {record.uses})" if record.uses is not None else ""
    if record.schedule:
        name = record.schedule
        if policy is None or name not in policy.schedules:
            return Decision(False, f"denied: schedule '{name}' is not defined", cid, assurance)
        if not in_schedule(policy, name, now):
            return Decision(False, f"{OUTSIDE} '{name}'", cid, assurance)
        return Decision(True, f"granted: schedule '{name}'{entry}", cid, assurance)
    if mode == "lockdown":
        return Decision(True, "granted: staff during lockdown", cid, assurance)
    return Decision(True, GRANTED + entry, cid, assurance)
