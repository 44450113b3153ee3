"""Office commands of `accessctl` for people: add, list, show, edit, remove, grants, and CSV import/export of residents.

Each command parses, calls the library (accessd.site), prints (rich tables, or --json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.progress import Progress

from ..site import csvimport
from ..site.db import ROLES
from .common import (InputFile, SafePath, console, fmt_time, json_opt, out, plural, read_input,
                     site_of)
from .office_common import _table


@click.group("person")
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

@person_group.command("export")
@click.argument("person_id")
@click.option("--out", "out_path", type=SafePath(dir_okay=False, path_type=Path), required=True,
              help="The JSON file to write; the readable page goes beside it (.html).")
@click.pass_obj
def person_export(obj, person_id, out_path):
    """Everything the site holds about one person, for them (subject access): profile,
    credentials (fingerprints, never values), groups, schedules, passes they issued,
    their door events and who at the office looked at their data; as JSON and as a
    readable HTML page, in the site's time zone. The export is itself recorded.

    \b
    Example:
      accessctl --site /srv/accessd-site person export p1a2b3c4 --out anna-berg.json
    """
    from ..site import subject
    site = site_of(obj)
    pid = site.person_named(person_id)
    html_path = out_path.with_suffix(".html")
    if out_path.suffix.lower() != ".json":
        raise click.BadParameter(f"{out_path}: must end in .json (the page goes beside it "
                                 "as .html)", param_hint="--out")
    doc = subject.export(site, pid)
    try:
        out_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        html_path.write_text(subject.to_html(doc))
    except OSError as exc:
        raise click.BadParameter(f"cannot write {exc.filename}: {exc.strerror}",
                                 param_hint="--out") from None
    click.echo(f"{out_path} and {html_path}: {len(doc['credentials'])} credentials, "
               f"{len(doc['door_events'])} door events, {len(doc['office_access'])} office "
               "accesses")


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

@person_group.command("forget")
@click.argument("person_id")
@click.option("--reason", required=True,
              help="Why (kept, sealed, in the audit trail), e.g. 'moved out 2026-11-30'.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-publish", is_flag=True,
              help="Do not publish now (the doors keep the credentials until you do).")
@json_opt
@click.pass_obj
def person_forget(obj, person_id, reason, yes, no_publish, as_json):
    """Erase a person for good (right to erasure): their credentials are revoked and
    published, and their name, phone, the labels of passes they issued and the notes
    about them become unreadable everywhere the site keeps them, backups taken before
    included (their data key is destroyed). Their door events stay, as "former
    resident" with the unit. Cannot be undone.

    \b
    Example:
      accessctl --site /srv/accessd-site person forget p1a2b3c4 --reason "moved out"
    """
    site = site_of(obj)
    pid = site.person_named(person_id)
    p = site.person(pid)
    if p.forgotten:
        from ..errors import StoreError
        raise StoreError(f"person {pid} was already erased")
    if not yes and not click.confirm(f"Erase {site.label(p)} [{pid}] for good? This cannot "
                                     "be undone", default=False):
        raise click.Abort()
    done = site.person_forget(pid, reason)
    done["published"] = None
    from ..errors import AccessdError
    from ..site.backup import record_erasure
    from ..site.publish import publish
    try:
        store = site.store()
        record_erasure(store, pid, done["at"])   # (a restored office erases them again)
        if not no_publish and site.groups():
            res = publish(site, store)
            done["published"] = res[0]["version"] if res else None
    except AccessdError as exc:
        click.echo(f"accessctl: erased, but the store was not reached ({exc}): run "
                   "'accessctl publish' so the doors drop the credentials", err=True)

    def human():
        click.echo(f"{pid} erased: {plural(len(done['credentials']), 'credential')} revoked, "
                   f"{plural(done['passes_revoked'], 'pass', 'passes')} revoked; the log now "
                   f"reads \"former resident ({done['unit'] or '-'})\""
                   + (f"; published version {done['published']}" if done.get("published")
                      else ""))
    out(as_json, done, human)


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


@click.command()
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


@click.command()
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


@click.command("import")
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


@click.command()
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


COMMANDS = [person_group, grant, ungrant, import_, export]
