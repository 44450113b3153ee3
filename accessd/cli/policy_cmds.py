"""Office commands of `accessctl` for when doors open: schedules, holidays, role schedules, and `explain` (why a credential would or would not open a door).

Each command parses, calls the library (accessd.site), prints (rich tables, or --json).
"""

from __future__ import annotations

import json

import click

from ..site.db import ROLES
from .common import (FloatRange, fmt_time, json_opt, out, parse_when, site_of)


@click.group("schedule")
def schedule_group() -> None:
    """Weekly schedules that limit when credentials open doors.

    \b
    Example:
      accessctl --site /srv/accessd-site schedule add delivery --window "mon-fri 08:00-16:00"
    """

@schedule_group.command("add")
@click.argument("name")
@click.option("--window", "windows", multiple=True, required=True,
              help='"DAYS HH:MM-HH:MM": mon-fri, sat, sun, daily, weekdays, weekends; '
                   'an end before the start crosses midnight (repeatable).')
@click.option("--replace", is_flag=True, help="Change a schedule that exists already.")
@click.pass_obj
def schedule_add(obj, name, windows, replace):
    """Add a schedule (--replace to change one). Bad windows are refused with the
    reason.

    \b
    Examples:
      accessctl --site /srv/accessd-site schedule add delivery --window "mon-fri 08:00-16:00"
      accessctl --site /srv/accessd-site schedule add night --window "daily 22:00-06:00"
      accessctl --site /srv/accessd-site schedule add delivery --window "daily 07:00-18:00" --replace
    """
    spec: dict[str, list[str]] = {}
    for w in windows:
        parts = w.split()
        if len(parts) != 2:
            raise click.BadParameter(f"{w!r}: give DAYS and a window, e.g. 'mon-fri 08:00-16:00'",
                                     param_hint="--window")
        spec.setdefault(parts[0], []).append(parts[1])
    s = site_of(obj).schedule_set(name, spec, replace=replace)
    click.echo(f"schedule {name}: {json.dumps(s.to_spec())}; run 'accessctl publish'")

@schedule_group.command("list")
@json_opt
@click.pass_obj
def schedule_list(obj, as_json):
    """List schedules, holidays, role defaults and the time zone.

    \b
    Example:
      accessctl --site /srv/accessd-site schedule list
    """
    site = site_of(obj)
    p = site.policy()
    doc = {**p.to_json(), "roles": site.role_schedules()}

    def human():
        click.echo(f"time zone {p.tz}")
        for n, spec in doc["schedules"].items():
            click.echo(f"schedule {n}: " + "; ".join(f"{d} {', '.join(ws)}"
                                                      for d, ws in spec.items()))
        for d, v in sorted(p.holidays.items()):
            click.echo(f"holiday {d}: {v}")
        for r, n in sorted(doc["roles"].items()):
            click.echo(f"role {r}: schedule {n}")
    out(as_json, doc, human)

@schedule_group.command("remove")
@click.argument("name")
@click.pass_obj
def schedule_remove(obj, name):
    """Remove a schedule nothing uses any more.

    \b
    Example:
      accessctl --site /srv/accessd-site schedule remove night
    """
    site_of(obj).schedule_remove(name)
    click.echo(f"schedule {name} removed")


@click.command("holiday")
@click.argument("day")
@click.option("--use", "use", default="off", show_default=True,
              help="'off' (closed all day) or a schedule to use instead.")
@click.option("--remove", is_flag=True, help="Remove the holiday.")
@click.pass_obj
def holiday(obj, day, use, remove):
    """Mark a date a holiday: schedules are off, or another one applies.

    \b
    Examples:
      accessctl --site /srv/accessd-site holiday 2026-12-25
      accessctl --site /srv/accessd-site holiday 2026-12-24 --use short-day
    """
    site = site_of(obj)
    if remove:
        site.holiday_remove(day)
        click.echo(f"{day} is no longer a holiday")
    else:
        site.holiday_set(day, use)
        click.echo(f"holiday {day}: {use}; run 'accessctl publish'")


@click.command("role-schedule")
@click.argument("role", type=click.Choice(ROLES))
@click.argument("schedule")
@click.pass_obj
def role_schedule(obj, role, schedule):
    """Make a role follow a schedule ("none" to lift it), e.g. couriers in delivery hours.

    \b
    Example:
      accessctl --site /srv/accessd-site role-schedule courier delivery
    """
    site_of(obj).role_schedule_set(role, None if schedule == "none" else schedule)
    click.echo(f"role {role}: schedule {schedule}; run 'accessctl publish'")


@click.command("explain")
@click.argument("credential_id")
@click.option("--door", "door_id", required=True, help="The door to ask about.")
@click.option("--at", "at", help="When: 2026-12-24T18:30 in the site's time zone "
                                 "(default: now).")
@click.option("--mode", "mode", type=click.Choice(["normal", "lockdown", "held-open"]),
              default="normal", show_default=True, help="The door's mode.")
@click.option("--used", type=click.IntRange(0, 10**6), default=0, show_default=True,
              help="Entries the pass already made at that door.")
@click.option("--whitelist-age-hours", type=FloatRange(0, 10**6),
              help="How old the door's whitelist is (temporary passes fail closed).")
@click.option("--clock-unsynced", type=click.Choice(["deny", "residents", "trust"]),
              help="Ask as if the door's clock were not synchronised, with this policy.")
@click.option("--card-pin", is_flag=True, help="Ask as if the door required card+PIN.")
@click.option("--pin-lockout", is_flag=True, help="Ask as if the keypad were locked out.")
@click.option("--high-assurance", is_flag=True,
              help="Ask as if the door required high assurance (policy.high_assurance).")
@json_opt
@click.pass_obj
def explain(obj, credential_id, door_id, at, mode, used, whitelist_age_hours,
            clock_unsynced, card_pin, pin_lockout, high_assurance, as_json):
    """Why a credential would or would not open a door at a given time.

    Runs the door's own access pipeline (accessd/core/access.py) on the row
    the door would get, with the site's schedules and holidays, and the door
    situation you give (--card-pin and --pin-lockout ask as if that keypad
    state held).

    \b
    Examples:
      accessctl --site /srv/accessd-site explain c1a2b3c4d5 --door bldg-a-main --at 2026-12-24T18:30
      accessctl --site /srv/accessd-site explain c1a2b3c4d5 --door bldg-a-main --mode lockdown
      accessctl --site /srv/accessd-site explain c1a2b3c4d5 --door gate --high-assurance
    """
    import math
    import time as _time
    from ..core import access, guards
    from ..core.credentials import CredentialRecord
    site = site_of(obj)
    door = site.door(door_id)
    row = site.door_row(credential_id)
    when = parse_when(at, tz=site.timezone, param="--at") if at else _time.time()
    if door["group"] not in site.groups_of_credential(credential_id):
        reason = (f"denied: unknown credential (not granted door group {door['group']!r}, "
                  "so it is not in this door's bundle)")
        granted = False
    else:
        # the door's own pipeline, on the row the door would get and the situation given
        rec = CredentialRecord.from_row(row)
        cfg = access.Settings(guards.LockoutSettings(5, 300, 60, 900),
                              guards.StrangerSettings(5, 120), 24.0,
                              clock_unsynced or "trust", "always" if card_pin else "never",
                              high_assurance="always" if high_assurance else "never")
        state = access.AccessState().with_used(rec.credential_id, used)
        if pin_lockout:  # locked for as long as the door says; here: still locked
            state = state.with_lockout("keypad", guards.Lockout(locked_until=math.inf))
        at_door = access.Situation(mode, when, site.policy(), whitelist_age_hours,
                                   clock_unsynced is None)
        # a secure card as it is when genuine: its check at the reader succeeded
        o = access.present(state, access.Presented("keypad", row["kind"], "",
                                                   row["assurance"]), rec, at_door, cfg, 0.0)
        reason, granted = o.reason, o.granted
        if o.decision == "pending":
            reason = ("card accepted; PIN required (the holder's PIN then gives "
                      "'granted: card+PIN'; another's 'denied: PIN does not match the "
                      "card'; none in time 'denied: no PIN after the card')")
    holder = site.person(row["holder"])
    tz = site.timezone
    from ..core.when import day as local_day
    today = local_day(when, tz)
    holiday = site.policy().holidays.get(today)
    if holiday and row.get("schedule"):   # why a schedule is off, or another one today
        reason += (f" ({today} is a holiday: schedules are off all day)" if holiday == "off"
                   else f" ({today} is a holiday: schedule '{holiday}' applies instead)")
    doc = {"credential": credential_id, "door": door_id, "at": when,
           "at_local": f"{fmt_time(when, tz)} {tz}", "granted": granted,
           "reason": reason, "schedule": row.get("schedule"), "person": row["holder"],
           "name": site.label(holder), "assurance": row["assurance"],
           "card": row.get("card") or None, "holiday": holiday}
    what = f"{row['card']} card" if row.get("card") else row["kind"]
    out(as_json, doc, lambda: click.echo(
        f"{'OPENS' if granted else 'DOES NOT OPEN'}: {reason}\n"
        f"  {site.label(holder)}'s {what} {credential_id} (assurance {row['assurance']}) "
        f"at door {door_id}, {doc['at_local']}"
        + ("\n  a copy of its UID alone is denied: the door checks the card's keys"
           if row.get("card") else "")))

# ---- door groups and doors ----------------------------------------------------


COMMANDS = [schedule_group, holiday, role_schedule, explain]
