"""Office commands of `accessctl` for doors: door groups, doors, their readers, CSV import, provisioning, key files, and one-off unlock tokens.

Each command parses, calls the library (accessd.site), prints (rich tables, or --json).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.progress import Progress

from ..core.credentials import READER_GIVES
from ..site import csvimport
from ..site.publish import door_keys
from ..storage.keys import write_key_file
from .common import (FloatRange, InputFile, SafePath, console, json_opt, out, plural, read_input, site_of)
from .office_common import _table


@click.command("token")
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


@click.group("group")
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


@click.group("door")
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
@click.option("--release", "release",
              help="With OUT_DIR a card's boot partition: the built release to install "
                   "from it ('accessctl release build').")
@click.pass_obj
def door_provision(obj, out_dir, door_ids, release):
    """Write one directory per door: its key file and its config. With
    --release, OUT_DIR is instead a fresh Raspberry Pi OS Lite card's boot
    partition and --door one door: the card then installs that door at its
    first boot, with no network (see the README, "Install 225 doors").

    OUT_DIR/<door>/keys.json (mode 0600) goes to the door as
    /etc/accessd/keys.json (owner accessd); OUT_DIR/<door>/accessd.toml is the
    Pi example config with door.id and sync.url (the site's store) set, to
    finish with the door's pins and readers. Keep OUT_DIR private: the key
    files open the group's bundles.

    \b
    Example:
      accessctl --site /srv/accessd-site door provision /srv/accessd-doors
      scp -r /srv/accessd-doors/bldg-a-main installer@bldg-a-main:
      accessctl --site /srv/accessd-site door provision /media/$USER/bootfs \\
          --door bldg-a-main --release 0.3.0
    """
    from ..site.provision import provision, write_boot
    site = site_of(obj)
    if release is not None:
        if len(door_ids) != 1:
            raise click.UsageError("a card is for one door: give --door ID once with --release")
        from .release_cmds import _release_dir
        res = write_boot(site, door_ids[0], Path(out_dir), _release_dir(site, release, None))
        click.echo(f"wrote door {res['door']} and release {res['release']} "
                   f"({res['bytes'] / 1e6:.1f} MB) to {out_dir}: set the pins and readers in "
                   f"{out_dir}/accessd/accessd.toml, then boot the Pi from the card")
        return
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


COMMANDS = [token_cmd, group_group, door_group]
