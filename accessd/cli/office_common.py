"""Helpers the office commands share: stores from URLs staff typed, --since, following a publish on the live channel, tables."""

from __future__ import annotations


import click
from rich.progress import Progress
from rich.table import Table

from ..sync.store import open_store
from .common import (console, fail, parse_when)


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
