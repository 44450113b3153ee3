"""Who may do what in the office console: the one check every route goes through.

Each route in routes.py names one action; `may(actor, action)` answers for it.
Auditors read; staff also enrol, revoke, issue passes, publish and acknowledge
alarms; administrators also run the doors (remote commands, door import) and the
staff accounts. A resident reaches only the resident pages (their own data: the
handlers there take the person from the session, never from the request).
"""

from __future__ import annotations

from ..site.staff import Actor

ANYONE = "anyone"

# action -> roles allowed
ACTIONS: dict[str, frozenset[str]] = {
    ANYONE: frozenset({"anonymous", "resident", "auditor", "staff", "admin"}),
    "signed-in": frozenset({"resident", "auditor", "staff", "admin"}),
    "read": frozenset({"auditor", "staff", "admin"}),
    "people.write": frozenset({"staff", "admin"}),
    "passes.write": frozenset({"staff", "admin"}),
    "publish": frozenset({"staff", "admin"}),
    "alarms.ack": frozenset({"staff", "admin"}),
    "doors.command": frozenset({"admin"}),
    "doors.write": frozenset({"admin"}),
    "staff.manage": frozenset({"admin"}),
    "resident": frozenset({"resident"}),
}

ROLES = ("anonymous", "resident", "auditor", "staff", "admin")


def role_of(actor: Actor | None) -> str:
    return actor.role if actor is not None else "anonymous"


def may(actor: Actor | None, action: str) -> bool:
    """May this actor (None: not signed in) take this action?"""
    return role_of(actor) in ACTIONS[action]
