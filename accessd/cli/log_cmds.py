"""Office commands of `accessctl` for door logs: pull them from the store, show them, and the daily report.

Each command parses, calls the library (accessd.site), prints (rich tables, or --json).
"""

from __future__ import annotations

import sys

import click

from .common import (console, iso_local,
                     json_opt, out, plural, site_of)
from .office_common import _open_store, _since, _site_store, _table


@click.group("logs")
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

@logs_group.command("purge")
@json_opt
@click.pass_obj
def logs_purge(obj, as_json):
    """Delete door events older than the site keeps them ('site retention', default
    180 days) and acknowledged alarms as old; a signed checkpoint keeps each door's
    hash chain verifiable from where it was cut. Run nightly (the office's
    accessd-office-purge.timer does).

    \b
    Example:
      accessctl --site /srv/accessd-site logs purge
    """
    from ..site import intake
    site = site_of(obj)
    res = intake.purge(site)
    out(as_json, res, lambda: click.echo(
        f"{plural(res['events'], 'door event')} of {plural(len(res['doors']), 'door')} and "
        f"{plural(res['alarms'], 'alarm')} older than {res['days']} days deleted"))


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


@click.command("report")
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


COMMANDS = [logs_group, report_cmd]
