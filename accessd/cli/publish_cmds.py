"""Office commands of `accessctl` that send the whitelist to doors: `publish` (with --push/--wait) and `sync now` on a door.

Each command parses, calls the library (accessd.site), prints (rich tables, or --json).
"""

from __future__ import annotations

import sys

import click
from rich.progress import Progress

from ..site.publish import publish
from .common import (FloatRange, console, fail, json_opt, out, plural, reply, site_of)
from .office_common import _open_store, _set_store, _site_store, _wait_applied, _say_applied


@click.command("publish")
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
        from ..live.broker import office_broker
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


@click.group("sync")
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


COMMANDS = [publish_cmd, sync_group]
