"""Office commands of `accessctl` for the site itself: create it, show it, check every door (doctor), its store, time zone and retention, and back it up and restore it.

Each command parses, calls the library (accessd.site), prints (rich tables, or --json).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..site.db import SiteDB
from .common import (FloatRange, InputFile, SafePath, console, fmt_time, iso_local,
                     json_opt, out, plural, read_input, site_of)
from .office_common import _table


@click.group("site")
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
    from ..site import backup
    site_dir, database = obj.site_location()
    site = SiteDB.init(site_dir, site_id, database)
    click.echo(f"site {site_id} created in {site.where} (keys in {site.dir / 'keys'}, "
               "mode 0600)")
    _say_recovery_key(backup.recovery_key_new(site))
    site.close()


def _say_recovery_key(text: str) -> None:
    click.echo(f"recovery key (shown once: print it or write it down, and keep it away "
               f"from this machine; 'site restore' needs it):\n  {text}")


@site_group.command("recovery-key")
@click.option("--yes", is_flag=True, help="Replace the site's recovery key without asking.")
@click.pass_obj
def site_recovery_key(obj, yes):
    """Make a new recovery key (the key office backups are encrypted to) and show it
    once. Backups made before still need the key they were made with.

    \b
    Example:
      accessctl --site /srv/accessd-site site recovery-key
    """
    from ..site import backup
    site = site_of(obj)
    if site.meta("recovery_public") and not yes and not click.confirm(
            "This site has a recovery key: make a new one (keep the old one for older "
            "backups)?", default=False):
        raise click.Abort()
    _say_recovery_key(backup.recovery_key_new(site))


@site_group.command("backup")
@click.option("--out", "out_path", type=SafePath(dir_okay=False, path_type=Path),
              required=True, help="The backup file to write (replaced if it exists).")
@json_opt
@click.pass_obj
def site_backup(obj, out_path, as_json):
    """Back up the office: the site database (a consistent copy while staff work; a
    PostgreSQL site through pg_dump) and its keys/ directory, in one file encrypted to
    the site's recovery key. Needs no secret: run it nightly and copy the file off
    the machine.

    \b
    Example:
      accessctl --site /srv/accessd-site site backup --out /mnt/usb/accessd-$(date +%F).backup
    """
    from ..site import backup
    site = site_of(obj)
    res = backup.backup(site, out_path, database_url=obj.site_location()[1])
    out(as_json, res, lambda: click.echo(
        f"{res['file']}: {res['bytes']} bytes, site {res['site']} ({res['dialect']}), "
        f"encrypted to recovery key {res['recovery']}"))


@site_group.command("restore")
@click.argument("backup_file", type=SafePath(exists=True, dir_okay=False, path_type=Path))
@click.option("--recovery-key-file", type=InputFile("rb"),
              help="Read the recovery key from this file, or - (default: asked for).")
@click.option("--store", "store_url", help="The site's store, if not the one the backup "
                                            "names (to continue the bundle versions).")
@json_opt
@click.pass_obj
def site_restore(obj, backup_file, recovery_key_file, store_url, as_json):
    """Rebuild the office from a backup into an empty site directory (or, for a
    PostgreSQL site, an empty database given as --site URL --site-dir DIR). The bundle
    version goes on from the newest in the store (the doors take the next publish),
    and people erased since the backup are erased again.

    \b
    Examples:
      accessctl --site /srv/accessd-site site restore /mnt/usb/accessd-2026-12-04.backup
      accessctl --site postgresql://office@db.lan/accessd2 --site-dir /srv/accessd-site \\
          site restore accessd.backup --recovery-key-file /root/recovery.txt
    """
    from ..site import backup
    site_dir, database = obj.site_location()
    if recovery_key_file:
        raw = read_input(recovery_key_file, "--recovery-key-file", limit=4096)
        text = raw.decode("utf-8", "replace")    # (a wrong character is said as mistyped)
    else:
        text = click.prompt("recovery key", hide_input=True, err=True)
    res = backup.restore(backup_file, text, site_dir, database=database, store_url=store_url)

    def human():
        click.echo(f"site {res['site']} restored from a backup made "
                   f"{fmt_time(res['backup_made'])}; bundle version {res['version']} "
                   f"(the backup had {res['version_in_backup']}); "
                   f"{plural(len(res['erased_again']), 'person', 'people')} erased again. "
                   "Publish now: the doors take it.")
    out(as_json, res, human)

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


@site_group.command("retention")
@click.argument("days", type=click.IntRange(1, 3650), required=False)
@click.pass_obj
def site_retention(obj, days):
    """Show, or set, how many days the office keeps door events (default 180).
    'accessctl logs purge' (nightly: systemd/accessd-office-purge.timer) deletes
    older ones; doors keep their own (storage.retention_days, default 30).

    \b
    Example:
      accessctl --site /srv/accessd-site site retention 90
    """
    from ..site import intake
    site = site_of(obj)
    if days is not None:
        intake.retention_set(site, days)
    click.echo(f"door events are kept {intake.retention_days(site)} days at the office")

# ---- schedules and holidays ----------------------------------------------------


COMMANDS = [site_group]
