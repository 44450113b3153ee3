"""Which log records are alarms, and what staff call them (one list for the door's
publisher, the office's intake, its report and its live view).

An alarm is a record the office should see at once: the door publishes it to
.../alarms as well as .../events, the office keeps it open until a member of
staff acknowledges it (`accessctl ack`).
"""

from __future__ import annotations

# record kind -> the words the office's alarm list uses
ALARMS: dict[str, str] = {
    "door.forced": "door forced",
    "door.held_open": "door held open",
    "alarm.duress": "duress PIN",
    "alarm.stranger": "stranger probing",
    "tamper": "tamper",
    "reader.fault": "reader fault",
    "log.degraded": "event log degraded",
    "events.dropped": "events dropped",
    "sync.stale": "whitelist stale",
    "sync.rejected": "update rejected",
    "clock.unsynced": "clock unsynced",
    "clock.check_failed": "clock check failed",
    "core.error": "door software error",
    "cmd.rejected": "command refused",
}

ALARM_KINDS = frozenset(ALARMS)


def label(kind: str) -> str:
    return ALARMS.get(kind, kind)
