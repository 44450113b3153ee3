"""Every page and action of the office console, in one table: the path, the
methods, the handler, and the one action (permissions.py) a caller must be
allowed. The route x role test walks this table; nothing else grants access."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .views import admin, auth, dashboard, doors, logs, passes, people, publish, resident


@dataclass(frozen=True)
class Route:
    path: str
    handler: Callable | None
    action: str
    methods: tuple[str, ...] = ("GET",)
    name: str = ""
    csrf: str = "session"          # a POST carries the session's token ("pre": the sign-in form's)
    stream: Callable | None = None  # an async endpoint of its own (server-sent events)


def r(path, handler, action, *methods, csrf="session", stream=None) -> Route:
    return Route(path, handler, action, tuple(methods) or ("GET",),
                 name=(handler or stream).__module__.rsplit(".", 1)[-1] + "."
                 + (handler or stream).__name__, csrf=csrf, stream=stream)


ROUTES: list[Route] = [
    # signing in and out
    r("/login", auth.login_form, "anyone"),
    r("/login", auth.login, "anyone", "POST", csrf="pre"),
    r("/me/login", auth.resident_login_form, "anyone"),
    r("/me/login", auth.resident_login, "anyone", "POST", csrf="pre"),
    r("/logout", auth.logout, "signed-in", "POST"),
    r("/lang/{lang}", auth.language, "anyone"),
    # staff: the dashboard and its live stream
    r("/", dashboard.dashboard, "read"),
    r("/partials/alarms", dashboard.alarms_partial, "read"),
    r("/partials/doors", dashboard.doors_partial, "read"),
    r("/live", None, "read", stream=dashboard.stream),
    r("/alarms/{alarm_id:int}/ack", dashboard.ack, "alarms.ack", "POST"),
    # people
    r("/people", people.people, "read"),
    r("/people", people.person_add, "people.write", "POST"),
    r("/people/import", people.import_form, "people.write"),
    r("/people/import", people.import_csv, "people.write", "POST"),
    r("/people/export.csv", people.export_csv, "read"),
    r("/people/{person_id}", people.person, "read"),
    r("/people/{person_id}/enrol", people.enrol, "people.write", "POST"),
    r("/people/{person_id}/grant", people.grant, "people.write", "POST"),
    r("/people/{person_id}/code", people.resident_code, "people.write", "POST"),
    r("/credentials/{credential_id}", people.credential_action, "people.write", "POST"),
    # publishing
    r("/publish", publish.page, "read"),
    r("/publish", publish.publish, "publish", "POST"),
    r("/publish/{version:int}", publish.progress, "read"),
    # passes
    r("/passes", passes.listing, "read"),
    r("/passes", passes.issue, "passes.write", "POST"),
    r("/passes/{pass_id}/revoke", passes.revoke, "passes.write", "POST"),
    # logs
    r("/logs", logs.logs, "read"),
    r("/logs/export.csv", logs.export, "read"),
    r("/logs/chart", logs.chart, "read"),
    # doors
    r("/doors", doors.doors, "read"),
    r("/doors/import", doors.import_csv, "doors.write", "POST"),
    r("/doors/{door_id}/command", doors.command, "doors.command", "POST"),
    # administration
    r("/staff", admin.staff_page, "staff.manage"),
    r("/staff", admin.staff_add, "staff.manage", "POST"),
    r("/staff/limits", admin.limits, "staff.manage", "POST"),
    r("/staff/{name}", admin.staff_change, "staff.manage", "POST"),
    r("/audit", admin.audit, "read"),
    # residents
    r("/me", resident.home, "resident"),
    r("/me/credentials/{credential_id}/lost", resident.lost, "resident", "POST"),
    r("/me/passes", resident.issue_pass, "resident", "POST"),
]
