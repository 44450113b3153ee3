"""Office commands of `accessctl` (with --site DIR): the site, door groups, doors,
people, grants, CSV import/export, publishing bundles, and `sync now` on a door.

Each command parses, calls accessd.site, prints (rich tables, or --json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.progress import Progress
from rich.table import Table

from ..core.credentials import READER_GIVES
from ..site import csvimport
from ..site.db import ROLES, SiteDB
from ..site.publish import door_keys, publish
from ..storage.keys import write_key_file
from ..sync.store import open_store
from .common import (FloatRange, InputFile, SafePath, console, fail, fmt_time, iso_local,
                     json_opt, out, parse_when, plural, read_input, reply, site_of)


def register(main) -> None:
    """Add the office commands to the accessctl group."""

    @main.group("site")
    def site_group() -> None:
        """Create and inspect the office's site database.

        \b
        Example:
          accessctl --site /srv/accessd-site site init riverside-estate
        """

    @site_group.command("init")
    @click.argument("site_id")
    @click.pass_obj
    def site_init(obj, site_id: str) -> None:
        """Create the site: database and keys (Ed25519 signing, lookup, data; mode 0600).

        The database is DIR/site.db, or with a postgresql:// --site that (empty)
        database; the keys are always written to the site directory. Other staff
        terminals then use the same URL with a copy of that keys/ directory.

        \b
        Examples:
          accessctl --site /srv/accessd-site site init riverside-estate
          accessctl --site postgresql://office@db.lan/accessd --site-dir /srv/accessd-site \\
              site init riverside-estate
        """
        site_dir, database = obj.site_location()
        site = SiteDB.init(site_dir, site_id, database)
        click.echo(f"site {site_id} created in {site.where} (keys in {site.dir / 'keys'}, "
                   "mode 0600)")
        site.close()

    @site_group.command("show")
    @json_opt
    @click.pass_obj
    def site_show(obj, as_json):
        """Show the site: its id, time zone, store, and how many doors, people and
        credentials it has.

        \b
        Example:
          accessctl --site /srv/accessd-site site show
        """
        site = site_of(obj)
        doc = {"site": site.site_id, "timezone": site.timezone, "store": site.store_url,
               **{t: site.db.count(t) for t in ("doors", "people", "credentials")}}
        out(as_json, doc, lambda: click.echo(
            f"site {doc['site']} in {site.where}\ntime zone {doc['timezone']}\n"
            f"store {doc['store'] or 'none yet (set it: accessctl site store URL)'}\n"
            f"{plural(doc['doors'], 'door')}, "
            f"{plural(doc['people'], 'person', 'people')}, "
            f"{plural(doc['credentials'], 'credential')}"))

    @site_group.command("doctor")
    @click.option("--upload-hours", default=36.0, show_default=True,
                  type=FloatRange(min=0, min_open=True),
                  help="A door whose log is older than this is reported.")
    @click.option("--whitelist-hours", default=36.0, show_default=True,
                  type=FloatRange(min=0, min_open=True),
                  help="A door still on an older whitelist this long after a publish "
                       "is reported.")
    @click.option("--all", "show_all", is_flag=True, help="List healthy doors too.")
    @json_opt
    @click.pass_obj
    def site_doctor(obj, upload_hours, whitelist_hours, show_all, as_json):
        """Doors whose log, sync or whitelist is old, from what the office has pulled.

        Exit status 1 when a door has a problem (for cron or monitoring). Run
        'logs pull' first: the doctor reads the logs the office has.

        \b
        Example:
          accessctl --site /srv/accessd-site logs pull && accessctl --site /srv/accessd-site site doctor
        """
        from ..site.provision import doctor
        site = site_of(obj)
        rows = doctor(site, upload_hours=upload_hours, whitelist_hours=whitelist_hours)
        bad = [r for r in rows if r["problems"]]
        shown = rows if show_all else bad

        def human():
            if shown:
                _table(console, f"{plural(len(bad), 'door')} with problems, of {len(rows)}",
                       ["door", "group", "last event", "whitelist", "problems"],
                       [[r["door"], r["group"] or "-", iso_local(r["last_event"], site.timezone)
                         if r["last_event"] else "never",
                         f"{r['whitelist_version'] or '-'} / {r['published_version']}",
                         "; ".join(r["problems"]) or "ok"] for r in shown])
            else:
                click.echo(f"all {plural(len(rows), 'door')} healthy")
        out(as_json, shown, human)
        if bad:
            sys.exit(1)

    @site_group.command("store")
    @click.argument("url")
    @click.pass_obj
    def site_store(obj, url):
        """Set the store bundles are published to and logs are pulled from (file://,
        https://, s3://): a setting of the site, shared by every terminal of a
        PostgreSQL site; 'publish --store URL' sets it too. Doors need the same URL
        as sync.url. A user and password in an https:// URL (Basic auth) are kept
        in this terminal's keys directory (0600), never in the database or output.

        \b
        Examples:
          accessctl --site /srv/accessd-site site store https://dav.example.org/accessd/
          accessctl --site /srv/accessd-site site store 'https://office:PASSWORD@dav.lan/accessd/'
        """
        from ..errors import ConfigError
        site = site_of(obj)
        try:   # a bad URL is refused here, not at the next publish
            clean = site.store_url_set(url)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="URL") from None
        kept = (" (its user and password kept in this terminal's keys directory, not in "
                "the database)" if clean != url else "")
        click.echo(f"store {clean}{kept}; set sync.url = \"{clean}\" on the doors")

    @site_group.command("timezone")
    @click.argument("tz")
    @click.pass_obj
    def site_timezone(obj, tz):
        """Set the time zone schedules and holidays are read in (IANA name).

        \b
        Example:
          accessctl --site /srv/accessd-site site timezone Europe/Oslo
        """
        site_of(obj).timezone_set(tz)
        click.echo(f"time zone {tz}; run 'accessctl publish' to update the doors")

    # ---- schedules and holidays ----------------------------------------------------
    @main.group("schedule")
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

    @main.command("holiday")
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

    @main.command("role-schedule")
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

    @main.command("token")
    @click.option("--door", "door_id", required=True, help="The door it opens.")
    @click.option("--ttl", default=30.0, show_default=True, type=FloatRange(1, 600),
                  help="Seconds it stays valid.")
    @click.option("--by", default="", help="Who asked (logged at the door), e.g. intercom-12A.")
    @click.pass_obj
    def token_cmd(obj, door_id, ttl, by):
        """Issue a signed one-time unlock token for a door (intercom, residents' app).

        The door accepts it once, within its lifetime:
        accessctl --config DOOR.toml unlock --token TOKEN

        \b
        Example:
          accessctl --site /srv/accessd-site token --door bldg-a-main --by intercom-12A
        """
        import time as _time
        from ..sync.token import issue
        site = site_of(obj)
        site.door(door_id)
        click.echo(issue(site.keys.signing, door_id, now=_time.time(), ttl=ttl, by=by))

    @main.command("explain")
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
    @main.group("group")
    def group_group() -> None:
        """Door groups: a building, an entrance, a unit door.

        \b
        Example:
          accessctl --site /srv/accessd-site group add bldg-a --description "Building A"
        """

    @group_group.command("add")
    @click.argument("group_id")
    @click.option("--description", default="", help="Free text for staff.")
    @click.pass_obj
    def group_add(obj, group_id, description):
        """Add a door group (it gets its own bundle key).

        \b
        Example:
          accessctl --site /srv/accessd-site group add bldg-a --description "Building A"
        """
        site = site_of(obj)
        site.group_add(group_id, description)
        click.echo(f"door group {group_id} added")

    @group_group.command("list")
    @json_opt
    @click.pass_obj
    def group_list(obj, as_json):
        """List door groups and how many doors each has.

        \b
        Example:
          accessctl --site /srv/accessd-site group list
        """
        rows = site_of(obj).groups()
        out(as_json, rows, lambda: _table(console, "door groups", ["id", "description", "doors"],
                                          [[r["id"], r["description"], str(r["doors"])] for r in rows]))

    @main.group("door")
    def door_group() -> None:
        """Doors of the site, and the key file each door needs.

        \b
        Example:
          accessctl --site /srv/accessd-site door add bldg-a-main --group bldg-a
        """

    readers_help = (f"The door's readers, comma-separated: {', '.join(READER_GIVES)} or "
                    "wiegand-raw-<bits>. Enrolment refuses a fob no reader of the site "
                    "could match, and two fobs a reader here could not tell apart. "
                    "Not given: any reader.")

    @door_group.command("add")
    @click.argument("door_id")
    @click.option("--group", "group_id", required=True, help="The door group it belongs to.")
    @click.option("--description", default="", help="Free text for staff.")
    @click.option("--readers", default="", help=readers_help)
    @click.pass_obj
    def door_add(obj, door_id, group_id, description, readers):
        """Add a door to a group (its id must match door.id in the door's config).

        \b
        Example:
          accessctl --site /srv/accessd-site door add bldg-a-main --group bldg-a \\
              --readers nfc,rdm6300,keypad
        """
        site_of(obj).door_add(door_id, group_id, description, readers.split(","))
        click.echo(f"door {door_id} added to group {group_id}")

    @door_group.command("readers")
    @click.argument("door_id")
    @click.argument("readers")
    @click.pass_obj
    def door_readers(obj, door_id, readers):
        """Say which readers a door has (comma-separated; "any" when unknown).

        \b
        Readers: nfc, keypad, rdm6300 (40-bit EM ID), ascii-decimal (32-bit),
        wiegand-26 (facility:card), wiegand-34 (32-bit), wiegand-37 (H10304),
        wiegand-raw-<bits> (a raw frame of that length).

        \b
        Example:
          accessctl --site /srv/accessd-site door readers bldg-a-gate wiegand-26,keypad
        """
        names = [] if readers.strip() == "any" else readers.split(",")
        site = site_of(obj)
        site.door_readers_set(door_id, names)
        click.echo(f"door {door_id}: readers {', '.join(site.door(door_id)['readers']) or 'any'}")

    @door_group.command("list")
    @json_opt
    @click.pass_obj
    def door_list(obj, as_json):
        """List doors.

        \b
        Example:
          accessctl --site /srv/accessd-site door list --json
        """
        rows = site_of(obj).doors()
        out(as_json, rows, lambda: _table(console, "doors", ["id", "group", "readers",
                                                             "description"],
                                          [[r["id"], r["group"], ",".join(r["readers"]) or "any",
                                            r["description"]] for r in rows]))

    @door_group.command("import")
    @click.argument("csv_file", type=InputFile("rb"))
    @json_opt
    @click.pass_obj
    def door_import(obj, csv_file, as_json):
        """Create doors (and their groups) from a CSV file; every line checked first.

        Columns: door, group, description, readers (';' between reader names, as
        for 'door readers'; empty: any). Groups that do not exist are created.
        With any bad line nothing is imported; every error names its line.
        Re-running the file changes nothing (a changed description or readers
        list is updated).

        \b
        Example:
          accessctl --site /srv/accessd-site door import doors.csv
          accessctl --site /srv/accessd-site door provision /srv/accessd-doors
        """
        from ..site.provision import import_doors
        site = site_of(obj)
        rep = import_doors(site, csvimport.decode(read_input(csv_file, "CSV_FILE"),
                                                  csv_file.name))

        def human():
            for line, msg in rep.errors:
                click.echo(f"{csv_file.name}:{line}: {msg}", err=True)
            if rep.imported:
                click.echo(f"imported: {plural(rep.groups_added, 'group')} and "
                           f"{plural(rep.doors_added, 'door')} added, "
                           f"{plural(rep.doors_changed, 'door')} updated, "
                           f"{plural(rep.unchanged, 'door')} already present")
            else:
                click.echo(f"accessctl: nothing imported: {plural(len(rep.errors), 'bad line')}",
                           err=True)
        out(as_json, rep.__dict__, human)
        if not rep.imported:
            sys.exit(1)

    @door_group.command("provision")
    @click.argument("out_dir", type=SafePath(file_okay=False))
    @click.option("--door", "door_ids", multiple=True,
                  help="Only this door (repeatable; default: every door).")
    @click.pass_obj
    def door_provision(obj, out_dir, door_ids):
        """Write one directory per door: its key file and its config.

        OUT_DIR/<door>/keys.json (mode 0600) goes to the door as
        /etc/accessd/keys.json (owner accessd); OUT_DIR/<door>/accessd.toml is the
        Pi example config with door.id and sync.url (the site's store) set, to
        finish with the door's pins and readers. Keep OUT_DIR private: the key
        files open the group's bundles.

        \b
        Example:
          accessctl --site /srv/accessd-site door provision /srv/accessd-doors
          scp -r /srv/accessd-doors/bldg-a-main installer@bldg-a-main:
        """
        from ..site.provision import provision
        site = site_of(obj)
        with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task("writing", total=len(door_ids) or len(site.doors()) or None)
            done = provision(site, Path(out_dir), door_ids or None,
                             progress=lambda d: bar.advance(task))
        click.echo(f"wrote {plural(len(done), 'door directory', 'door directories')} in "
                   f"{out_dir} (store {site.store_url})")

    @door_group.command("keys")
    @click.argument("door_id")
    @click.option("--out", "out_path", type=SafePath(dir_okay=False), required=True,
                  help="Where to write the door's key file (mode 0600).")
    @click.pass_obj
    def door_keys_cmd(obj, door_id, out_path):
        """Write the key file a door needs to read its group's bundles.

        Copy it to the door as its storage.key_file (mode 0600, owner accessd),
        and set sync.url in the door's config.

        \b
        Example:
          accessctl --site /srv/accessd-site door keys bldg-a-main --out /tmp/bldg-a-main.json
        """
        site = site_of(obj)
        keys = door_keys(site, door_id)
        write_key_file(Path(out_path), keys)
        click.echo(f"wrote {out_path} for door {door_id} (group {keys.site.group}, "
                   f"fingerprint {keys.fingerprint})")

    # ---- people ------------------------------------------------------------------------
    @main.group("person")
    def person_group() -> None:
        """Residents, couriers, visitors, staff and contractors.

        \b
        Example:
          accessctl --site /srv/accessd-site person add --name "Anna Berg" --unit 12A --role resident
        """

    @person_group.command("add")
    @click.option("--name", required=True)
    @click.option("--unit", default="", help="Flat or unit, e.g. 12A.")
    @click.option("--role", type=click.Choice(ROLES), default="resident", show_default=True)
    @click.option("--phone", help="Kept encrypted in the site database.")
    @click.option("--id", "person_id", help="Your own id for the person (default: generated).")
    @click.option("--group", "groups", multiple=True, help="Grant this door group (repeatable).")
    @json_opt
    @click.pass_obj
    def person_add(obj, name, unit, role, phone, person_id, groups, as_json):
        """Register a person (name and phone are encrypted at rest).

        \b
        Example:
          accessctl --site /srv/accessd-site person add --name "Anna Berg" --unit 12A --group bldg-a
        """
        site = site_of(obj)
        with site.db.atomic():
            pid = site.person_add(name, unit, role, phone, person_id)
            for g in groups:
                site.grant(pid, g)
        out(as_json, {"person": pid}, lambda: click.echo(f"person {pid} added"))

    @person_group.command("list")
    @json_opt
    @click.pass_obj
    def person_list(obj, as_json):
        """List people with their credentials and door groups.

        \b
        Example:
          accessctl --site /srv/accessd-site person list
        """
        site = site_of(obj)
        rows = [{"id": p.id, "name": p.name, "unit": p.unit, "role": p.role,
                 "credentials": len(site.credentials(p.id)), "groups": site.grants(p.id)}
                for p in site.people()]
        out(as_json, rows, lambda: _table(
            console, plural(len(rows), "person", "people"),
            ["id", "name", "unit", "role", "credentials", "groups"],
            [[r["id"], r["name"], r["unit"], r["role"], str(r["credentials"]),
              ", ".join(r["groups"])] for r in rows]))

    @person_group.command("show")
    @click.argument("person_id")
    @json_opt
    @click.pass_obj
    def person_show(obj, person_id, as_json):
        """Show one person, their credentials (fingerprints only) and groups.

        \b
        Example:
          accessctl --site /srv/accessd-site person show p1a2b3c4
        """
        site = site_of(obj)
        p = site.person(person_id)
        doc = {**p.__dict__, "groups": site.grants(p.id),
               "credentials": site.credentials(p.id, revoked=True)}
        tz = site.timezone

        def human():
            click.echo(f"{p.id}: {p.name}, unit {p.unit or '-'}, {p.role}, phone {p.phone or '-'}")
            click.echo(f"door groups: {', '.join(doc['groups']) or 'none'}")
            for c in doc["credentials"]:
                valid = ("" if c["valid_from"] is None and c["valid_until"] is None else
                         f", valid {fmt_time(c['valid_from'], tz)} .. "
                         f"{fmt_time(c['valid_until'], tz, end=True)} {tz}")
                kind = f"{c['kind']} (duress: opens and raises a silent alarm)" \
                    if c.get("duress") else c["kind"]
                click.echo(f"  {c['id']} {kind} {c['fingerprint']} {c['status']}{valid}")
        out(as_json, doc, human)

    @person_group.command("edit")
    @click.argument("person_id")
    @click.option("--name")
    @click.option("--unit")
    @click.option("--role", type=click.Choice(ROLES))
    @click.option("--phone")
    @click.option("--schedule", help="A schedule for this person only ('none' to lift it).")
    @click.pass_obj
    def person_edit(obj, person_id, name, unit, role, phone, schedule):
        """Change a person's details or schedule.

        \b
        Examples:
          accessctl --site /srv/accessd-site person edit p1a2b3c4 --unit 14C
          accessctl --site /srv/accessd-site person edit p1a2b3c4 --schedule night-shift
        """
        site = site_of(obj)
        with site.db.atomic():
            p = site.person_edit(person_id, name=name, unit=unit, role=role, phone=phone)
            if schedule is not None:
                site.person_schedule_set(person_id, None if schedule == "none" else schedule)
        click.echo(f"{p.id} updated")

    @person_group.command("remove")
    @click.argument("person_id")
    @click.pass_obj
    def person_remove(obj, person_id):
        """Remove a person with their credentials and grants (publish to apply).

        \b
        Example:
          accessctl --site /srv/accessd-site person remove p1a2b3c4
        """
        site_of(obj).person_remove(person_id)
        click.echo(f"{person_id} removed; run 'accessctl publish' to update the doors")

    @main.command()
    @click.argument("subject")
    @click.argument("group_id")
    @click.pass_obj
    def grant(obj, subject, group_id):
        """Let a person's credentials, or one credential, open a door group
        (publish to apply).

        \b
        Examples:
          accessctl --site /srv/accessd-site grant p1a2b3c4 bldg-a
          accessctl --site /srv/accessd-site grant c1a2b3c4d5 mailroom
        """
        kind = site_of(obj).grant(subject, group_id)
        click.echo(f"{kind} {subject} may open {group_id}")

    @main.command()
    @click.argument("subject")
    @click.argument("group_id")
    @click.pass_obj
    def ungrant(obj, subject, group_id):
        """Take a door group away from a person or a credential (publish to apply).

        \b
        Example:
          accessctl --site /srv/accessd-site ungrant p1a2b3c4 bldg-a
        """
        site_of(obj).ungrant(subject, group_id)
        click.echo(f"{subject} may no longer open {group_id}")

    # ---- import / export / publish --------------------------------------------------------
    @main.command("import")
    @click.argument("csv_file", type=InputFile("rb"))
    @click.option("--skip-bad", is_flag=True, help="Import the good rows even if some are bad.")
    @json_opt
    @click.pass_obj
    def import_(obj, csv_file, skip_bad, as_json):
        """Import residents from CSV; every row is checked first.

        Columns: name, unit, role, phone, kind, uid, groups, valid_from,
        valid_until. With any bad row nothing is imported (unless --skip-bad);
        every error names its line. Re-running the same file changes nothing.
        Dates are in the site's time zone; valid_until 2026-12-31 works through
        the 31st.

        \b
        Example:
          accessctl --site /srv/accessd-site import residents.csv
        """
        site = site_of(obj)
        text = csvimport.decode(read_input(csv_file, "CSV_FILE"), csv_file.name)
        total = max(0, text.count("\n") - 1)
        with Progress(console=console, transient=True, disable=as_json) as bar:
            task = bar.add_task("importing", total=total or None)
            rep = csvimport.import_csv(site, text, skip_bad=skip_bad,
                                       progress=lambda: bar.advance(task))
        doc = rep.__dict__

        def human():
            for line, msg in rep.errors:
                click.echo(f"{csv_file.name}:{line}: {msg}", err=True)
            for line, msg in rep.warnings:
                click.echo(f"{csv_file.name}:{line}: warning: {msg}", err=True)
            if rep.imported:
                click.echo(f"imported: {plural(rep.people_added, 'person', 'people')}, "
                           f"{plural(rep.credentials_added, 'credential')}, "
                           f"{plural(rep.grants_added, 'grant')} added; "
                           f"{plural(rep.unchanged, 'row')} already present"
                           + (f"; {plural(len(rep.errors), 'bad row')} skipped"
                              if rep.errors else ""))
            else:
                click.echo(f"accessctl: nothing imported: {plural(len(rep.errors), 'bad row')} "
                           "(fix them, or use --skip-bad)", err=True)
        out(as_json, doc, human)
        if not rep.imported:
            sys.exit(1)

    @main.command()
    @click.option("--out", "out_file", type=click.File("w"), default="-",
                  help="Where to write the CSV (default: standard output).")
    @click.pass_obj
    def export(obj, out_file):
        """Export people, credentials (fingerprints, never values) and groups as CSV.

        \b
        Example:
          accessctl --site /srv/accessd-site export --out people.csv
        """
        out_file.write(csvimport.export_csv(site_of(obj)))

    @main.command("publish")
    @click.option("--store", "store_url", help="Bundle store URL; remembered as the site's "
                                               "store (default: the site's store, see "
                                               "'site show').")
    @click.option("--valid-days", default=30.0, show_default=True, type=FloatRange(0.01, 3650),
                  help="Doors refuse a bundle older than this.")
    @click.option("--push", is_flag=True,
                  help="Tell every door to sync now, over the live channel (the broker "
                       "'broker setup' recorded); implies --wait.")
    @click.option("--wait", "wait_s", type=FloatRange(1, 86400), default=None,
                  metavar="SECONDS", is_flag=False, flag_value=600.0,
                  help="Wait (600 s, or SECONDS) until every door says it runs the new "
                       "version, showing how many have; exit 1 if some have not.")
    @json_opt
    @click.pass_obj
    def publish_cmd(obj, store_url, valid_days, push, wait_s, as_json):
        """Build, sign and encrypt one bundle per door group and put them in the store.

        Doors fetch it at their next sync (sync.interval_seconds); --push makes every
        door fetch it now, over the live channel. --wait follows the doors' status on
        the live channel and says which have applied it.

        \b
        Examples:
          accessctl --site /srv/accessd-site publish --store file:///srv/accessd-store
          accessctl --site /srv/accessd-site publish --push
          accessctl --site /srv/accessd-site publish --wait 900
        """
        site = site_of(obj)
        if push or wait_s:   # the broker is known before anything is published
            from ..site.broker import office_broker
            office_broker(site)
        store = _open_store(store_url, "--store", site) if store_url else _site_store(site)
        groups = [g for g in site.groups() if g["doors"]]
        with Progress(console=console, transient=True, disable=as_json) as bar:
            task = bar.add_task("publishing", total=len(groups) or None)
            res = publish(site, store, valid_days=valid_days, progress=lambda g: bar.advance(task))
        if store_url:             # remembered once it has taken a publish
            _set_store(site, store_url)

        def human():
            for r in res:
                click.echo(f"group {r['group']}: version {r['version']}, "
                           f"{plural(r['credentials'], 'credential')}, "
                           f"{plural(len(r['doors']), 'door')}, {r['bytes']} bytes")
                for problem in r["ambiguous"]:
                    click.echo(f"  warning: {problem}", err=True)
            click.echo(f"published to {store.url}" if res else "no door group has doors yet")
        if (push or wait_s) and res:
            if not as_json:
                human()      # published, whatever the broker does next
            doc = {"published": res, "doors": _wait_applied(site, res, push, wait_s or 600.0,
                                                            as_json)}
            late = [d for d, t in doc["doors"].items() if t is None]
            out(as_json, doc, lambda: _say_applied(doc["doors"], late))
            if late:
                sys.exit(1)
            return
        out(as_json, res, human)

    @main.group("logs")
    def logs_group() -> None:
        """The doors' logs at the office: load them, read them with names.

        \b
        Example:
          accessctl --site /srv/accessd-site logs show --door door-a1 --since 12h
        """

    @logs_group.command("pull")
    @click.option("--store", "store_url", help="Store URL (default: the site's store, see "
                                               "'site show').")
    @json_opt
    @click.pass_obj
    def logs_pull(obj, store_url, as_json):
        """Load the uploaded batches; verify each door's hash chain and sequence.

        Each batch must be signed by its door's own key: an unsigned or forged one,
        or one from a door this site does not have, is refused (REFUSED, exit 1)
        and named again at each pull and by 'site doctor'.

        \b
        Example:
          accessctl --site /srv/accessd-site logs pull
        """
        from ..site import intake
        site = site_of(obj)
        store = _open_store(store_url, "--store") if store_url else _site_store(site)
        res = intake.pull(site, store)
        doc = {d: {**r.__dict__, "ok": r.ok} for d, r in res.items()}
        click.echo(f"reading {store.url}", err=True)

        def human():
            if not res:
                click.echo(f"no new batches in {store.url}")
            for d, r in res.items():
                state = "chain intact" if r.ok else "PROBLEMS"
                click.echo(f"{d}: {plural(r.batches, 'batch', 'batches')}, "
                           f"{plural(r.added, 'event')} added"
                           + (f", {r.duplicates} already had" if r.duplicates else "")
                           + f"; {state}")
                for a, b in r.gaps:
                    click.echo(f"  gap: events #{a}..#{b} missing")
                for seq, why in r.bad:
                    click.echo(f"  #{seq}: {why}")
                for why in r.tampered:
                    click.echo(f"  TAMPERED: {why}")
                for why in r.refused:
                    click.echo(f"  REFUSED, not loaded: {why}")
        out(as_json, doc, human)
        if any(not r.ok for r in res.values()):
            sys.exit(1)

    @logs_group.command("show")
    @click.option("--door", help="Only this door.")
    @click.option("--person", help="Only this person's credentials: the id, or the name "
                                   "if only one person has it.")
    @click.option("--since", help="2026-11-21, 2026-11-21T18:00 (site time zone) or 12h (ago).")
    @click.option("--kind", "kinds", multiple=True, help="Only these kinds (repeatable).")
    @click.option("--limit", type=click.IntRange(1, 10_000_000))
    @json_opt
    @click.pass_obj
    def logs_show(obj, door, person, since, kinds, limit, as_json):
        """Who opened which door, when: events with the person's name.

        \b
        Examples:
          accessctl --site /srv/accessd-site logs show --door door-a1 --since 12h
          accessctl --site /srv/accessd-site logs show --kind access.denied
        """
        from ..site import intake
        site = site_of(obj)
        tz = site.timezone
        since_ts = _since(since, tz)
        if person:
            person = site.person_named(person)
        rows = intake.show(site, door=door, person=person, since=since_ts,
                           kinds=kinds, limit=limit)
        for r in rows:
            r["time"] = iso_local(r["ts"], tz)
        out(as_json, rows, lambda: _table(
            console, plural(len(rows), "event"), [f"time ({tz})", "door", "kind", "person",
                                                  "reason"],
            [[r["time"], r["door"], r["kind"], r["person"] or (r["credential"] or ""),
              r["reason"]] for r in rows]))

    @main.command("report")
    @click.option("--since", help="2026-11-01 or 7d (ago); default: everything.")
    @click.option("--strangers", is_flag=True,
                  help="Instead: unknown cards tried at two or more doors.")
    @json_opt
    @click.pass_obj
    def report_cmd(obj, since, strangers, as_json):
        """Per door and day (in the site's time zone): grants, denials and alarms; or
        the unknown credentials tried at several doors (--strangers).

        \b
        Examples:
          accessctl --site /srv/accessd-site report --since 7d
          accessctl --site /srv/accessd-site report --strangers --since 30d
        """
        from ..site import intake
        site = site_of(obj)
        tz = site.timezone
        since_ts = _since(since, tz)
        if strangers:
            rows = intake.strangers(site, since=since_ts)
            out(as_json, rows, lambda: _table(
                console, "unknown credentials at several doors",
                ["fingerprint", "doors", "tries", f"first ({tz})", f"last ({tz})", "which"],
                [[r["fingerprint"], str(r["doors"]), str(r["tries"]), iso_local(r["first"], tz),
                  iso_local(r["last"], tz), ", ".join(r["door_list"])] for r in rows]))
            return
        rows = intake.report(site, since=since_ts)
        out(as_json, rows, lambda: _table(
            console, "door report", ["day", "door", "granted", "denied", "alarms"],
            [[r["day"], r["door"], str(r["granted"]), str(r["denied"]), str(r["alarms"])]
             for r in rows]))

    @main.group("sync")
    def sync_group() -> None:
        """Make a door pull its bundle.

        \b
        Example:
          accessctl --config /etc/accessd/accessd.toml sync now
        """

    @sync_group.command("now")
    @json_opt
    @click.pass_obj
    def sync_now(obj, as_json):
        """Pull and apply this door's bundle now (through its control socket).

        \b
        Example:
          accessctl --config /etc/accessd/accessd.toml sync now
        """
        from ..sync.door import reply_seconds
        cfg = obj.cfg(require_keys=False)
        wait = reply_seconds(cfg.sync.timeout_seconds) + 10
        with obj.client() as c:
            r = c.request({"op": "sync"}, timeout=wait)
        if "result" not in r:
            reply(r)
        if not r.get("ok") and not as_json:
            fail(f"sync failed: {r['result']}")
        out(as_json, r, lambda: click.echo(r["result"]))
        if not r.get("ok"):
            sys.exit(1)


def _since(since: str | None, tz: str) -> str | None:
    """--since (in the site's time zone, or 12h ago) as the log's UTC timestamp text."""
    from ..storage.eventlog import utc_iso
    return utc_iso(parse_when(since, tz=tz, past=True, param="--since")) if since else None


def _wait_applied(site, res: list[dict], push: bool, timeout: float, quiet: bool) -> dict:
    """Follow the doors on the live channel until each runs the new version."""
    from ..live import office
    from ..live.rollout import wait_applied
    version = res[0]["version"]
    doors = sorted(d for r in res for d in r["doors"])
    with office.connect(site) as oc, \
            Progress(console=console, transient=True, disable=quiet) as bar:
        task = bar.add_task(f"version {version}: applied by 0 of {len(doors)} doors",
                            total=len(doors))
        return wait_applied(oc, site.site_id, version, doors, signing_key=site.keys.signing,
                            push=push, timeout=timeout,
                            progress=lambda n, m: bar.update(
                                task, completed=n,
                                description=f"version {version}: applied by {n} of {m} doors"))


def _say_applied(doors: dict, late: list[str]) -> None:
    times = sorted(t for t in doors.values() if t is not None)
    click.echo(f"applied by {len(times)} of {len(doors)} doors"
               + (f" (the last after {times[-1]:.1f} s)" if times else ""))
    if late:
        click.echo(f"not yet applied ({len(late)}): {', '.join(late)}; 'accessctl watch' "
                   "and 'site doctor' show why", err=True)


def _set_store(site, url: str) -> str:
    from ..errors import ConfigError
    try:
        return site.store_url_set(url)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--store") from None


def _site_store(site):
    """The site's store with this terminal's credentials; a site without one (on
    PostgreSQL) is told how to set it."""
    from ..errors import StoreError
    try:
        return site.store()
    except StoreError as exc:
        fail(str(exc))


def _open_store(url: str, param: str, site=None):
    """A store from a URL staff typed: a bad URL is bad input (exit 1), naming it. With
    the site, this terminal's credentials for it are used."""
    from ..errors import ConfigError
    try:
        return site.store(url) if site is not None else open_store(url)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None


def _table(console, title, cols, rows) -> None:
    t = Table(title=title)
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*r)
    console.print(t)
