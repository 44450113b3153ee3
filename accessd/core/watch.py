"""The door's slow watches: the clock's sync state, the whitelist's age, the
held-open schedule. Pure: each takes what it saw last and what it sees now, and
returns what to remember and the record to log on a change (once per episode).
The engine asks them (the clock on each decision, the others once a minute).
"""

from __future__ import annotations

from dataclasses import dataclass

from .access import LogRecord
from .schedule import Policy, in_schedule


@dataclass(frozen=True)
class ClockSeen:
    synced: bool | None = None   # None: not looked at yet
    error: str | None = None


def clock(seen: ClockSeen, synced: bool, error: str | None,
          policy: str) -> tuple[ClockSeen, list[LogRecord]]:
    """clock.check_failed when the kernel cannot be asked (once per distinct error),
    clock.unsynced / clock.synced on each change (not 'synced' at start)."""
    records = []
    if error != seen.error and error:
        records.append(LogRecord("clock.check_failed",
                                 f"cannot read the kernel's clock state: {error}; "
                                 + ("systemd-timesyncd says synchronised" if synced
                                    else "taken as not synchronised")))
    if synced != seen.synced:
        if not synced:
            records.append(LogRecord("clock.unsynced", "system clock is not synchronised: "
                                     f"credentials limited in time follow policy '{policy}'"))
        elif seen.synced is not None:
            records.append(LogRecord("clock.synced", "system clock synchronised"))
    return ClockSeen(synced, error), records


def stale(was: bool, age_h: float | None, limit_h: float,
          version: int) -> tuple[bool, LogRecord | None]:
    """sync.stale once per episode: the whitelist older than the limit."""
    now_stale = age_h is not None and age_h > limit_h
    if now_stale and not was:
        return True, LogRecord("sync.stale", f"whitelist is {age_h:.0f} h old "
                                             f"(maximum {limit_h:g} h)", None,
                               {"version": version})
    return now_stale, None


def hold_schedule(was: bool, policy: Policy | None, name: str,
                  wall: float) -> tuple[bool, LogRecord | None]:
    """door.mode when the held-open schedule opens or ends."""
    hold = bool(policy and name in policy.schedules and in_schedule(policy, name, wall))
    if hold == was:
        return hold, None
    return hold, LogRecord("door.mode", f"held open by schedule '{name}'" if hold
                           else f"schedule '{name}' ended: door no longer held open")
