"""Office commands of `accessctl` for the doors' software: `release build`,
`release publish`, `release list`, and `fleet` (which door runs what).

Each command parses, calls the library (accessd.site.release), prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..site import release as releases
from .common import SafePath, console, json_opt, out, plural, site_of
from .office_common import _site_store, _table


def _release_dir(site, version: str, where: str | None) -> Path:
    base = Path(where) if where else site.dir / "releases"
    from ..sync.release import check_version
    from ..errors import ReleaseError
    try:
        check_version(version)
    except ReleaseError as exc:
        raise click.BadParameter(str(exc), param_hint="VERSION") from None
    return base / version


@click.group("release")
def release_group() -> None:
    """The doors' software: build a signed wheelhouse, publish it to doors.

    \b
    Example:
      accessctl --site /srv/accessd-site release build
      accessctl --site /srv/accessd-site release publish 0.3.0 --canary 3
    """


@release_group.command("build")
@click.option("--version", "version", help="The release's version (default: accessd's own, "
                                           "from the source's pyproject.toml).")
@click.option("--source", type=SafePath(file_okay=False, exists=True),
              help="The accessd source tree to build (default: the checkout this runs from).")
@click.option("--platform", "platforms", multiple=True, default=("aarch64",),
              show_default=True, type=click.Choice(sorted(releases.PLATFORMS)),
              help="A door platform (repeatable): aarch64 is a Raspberry Pi (Bookworm).")
@click.option("--python", default="3.11", show_default=True,
              help="The doors' CPython version (Bookworm: 3.11).")
@click.option("--out", "out_dir", type=SafePath(file_okay=False),
              help="Where releases are kept (default: SITE/releases).")
@json_opt
@click.pass_obj
def release_build(obj, version, source, platforms, python, out_dir, as_json):
    """Build a release: accessd and every dependency as wheels for the doors'
    platforms, and a manifest (version, size and SHA-256 of each file) signed
    with the site's key. Needs the internet or a package mirror here (pip);
    the doors then need neither.

    \b
    Example:
      accessctl --site /srv/accessd-site release build --platform aarch64 --platform x86_64
    """
    site = site_of(obj)
    with console.status("building", spinner="dots") as st:
        path = releases.build(site, Path(out_dir) if out_dir else site.dir / "releases",
                              version=version, source=Path(source) if source else None,
                              platforms=tuple(dict.fromkeys(platforms)), python=python,
                              progress=lambda s: st.update(s) if console.is_terminal else None)
    _, m = releases.load(site, path)
    size = sum(f["size"] for f in m.files.values())
    out(as_json, {"version": m.version, "path": str(path), "files": len(m.files), "bytes": size,
                  "platforms": list(m.platforms)},
        lambda: click.echo(f"built release {m.version} in {path}: "
                           f"{plural(len(m.files), 'wheel')}, {size / 1e6:.1f} MB, for "
                           f"{', '.join(m.platforms)} (CPython {m.python})"))


@release_group.command("publish")
@click.argument("version")
@click.option("--door", "doors", multiple=True, help="A door (repeatable).")
@click.option("--group", "group", help="Every door of this group.")
@click.option("--all", "every", is_flag=True, help="Every door of the site.")
@click.option("--canary", type=click.IntRange(1, 10000),
              help="Only N doors (the first by id, of those chosen or of all) not yet told to "
                   "run it: try it on a few first.")
@click.option("--downgrade", is_flag=True,
              help="Allow doors running a newer release to go back to this one.")
@click.option("--from", "where", type=SafePath(file_okay=False),
              help="Where releases are kept (default: SITE/releases).")
@json_opt
@click.pass_obj
def release_publish(obj, version, doors, group, every, canary, downgrade, where, as_json):
    """Publish a built release to doors through the store. Each door's updater
    (hourly, or at once on 'accessctl sync now' / a pushed sync-now) checks the
    signature and every file, installs it beside the running one, switches, and
    rolls back by itself if it does not come up. 'accessctl fleet' shows where
    each door is.

    \b
    Example:
      accessctl --site /srv/accessd-site release publish 0.3.0 --canary 3
      accessctl --site /srv/accessd-site release publish 0.3.0 --group bldg-a
    """
    site = site_of(obj)
    path = _release_dir(site, version, where)
    releases.load(site, path)                       # a missing or foreign release: first
    chosen = releases.choose_doors(site, doors=doors, group=group, every=every, canary=canary,
                                   version=version)
    store = _site_store(site)
    res = releases.publish(site, store, path, chosen, downgrade=downgrade)
    out(as_json, res, lambda: click.echo(
        f"published release {res['version']} (serial {res['serial']}) to "
        f"{plural(len(chosen), 'door')}: {', '.join(chosen[:10])}"
        + (" ..." if len(chosen) > 10 else "")
        + f"; {res['bytes'] / 1e6:.1f} MB copied to the store"))


@release_group.command("list")
@click.option("--from", "where", type=SafePath(file_okay=False),
              help="Where releases are kept (default: SITE/releases).")
@json_opt
@click.pass_obj
def release_list(obj, where, as_json):
    """The releases built here.

    \b
    Example:
      accessctl --site /srv/accessd-site release list
    """
    from ..errors import ReleaseError
    from ..sync.release import version_key
    site = site_of(obj)
    base = Path(where) if where else site.dir / "releases"
    rows = []
    for d in sorted((p for p in base.glob("*") if (p / "manifest").is_file()),
                    key=lambda p: version_key(p.name) if p.name[0].isdigit() else (-1,)):
        try:
            _, m = releases.load(site, d)
            rows.append({"version": m.version, "files": len(m.files),
                         "platforms": list(m.platforms), "path": str(d)})
        except ReleaseError as exc:
            rows.append({"version": d.name, "error": str(exc), "path": str(d)})
    out(as_json, rows, lambda: _table(console, "Releases", ["version", "wheels", "platforms"],
                                      [(r["version"], str(r.get("files", "-")),
                                        ", ".join(r.get("platforms", [])) or r.get("error", ""))
                                       for r in rows]))


@click.command("fleet")
@json_opt
@click.pass_obj
def fleet_cmd(obj, as_json):
    """Every door's software: the release it runs (as it last reported), the one
    it was told to run, and what failed where (refused, rolled back, and why).

    \b
    Example:
      accessctl --site /srv/accessd-site fleet
    """
    site = site_of(obj)
    rows = releases.fleet(site)
    out(as_json, rows, lambda: _table(
        console, "Fleet", ["door", "group", "running", "told to run", "state"],
        [(r["door"], r["group"], r["running"] or "-", r["target"] or "-", r["state"])
         for r in rows]))
    if not as_json and any(r["state"] not in ("up to date", "no release published", "pending")
                           for r in rows):
        sys.exit(1)


COMMANDS = [release_group, fleet_cmd]
