"""`accessctl`: the staff CLI. Each command parses, calls the library, prints.

Tables go through rich; every command takes --json for scripts. Credential
values are never printed: a credential shows as its id and a short fingerprint.
"""

from __future__ import annotations

import json
import sys
import time

import click
from rich.table import Table

from .. import __version__
from ..config import DEFAULT_CONFIG
from ..storage import eventlog as evlog
from ..storage.keys import generate, write_key_file
from .common import (Ctx, Group, SafePath, console, fmt_time as _fmt_time,
                     json_opt, out as _out, parse_when, plural, reply as _reply,
                     site_of)

@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", "config_path", type=SafePath(dir_okay=False),
              envvar="ACCESSD_CONFIG", default=str(DEFAULT_CONFIG), show_default=True,
              help="The door's TOML config file (or $ACCESSD_CONFIG).")
@click.option("--site", "site_dir", envvar="ACCESSD_SITE",
              help="The office's site directory, or a postgresql:// URL of a site "
                   "database several terminals share (or $ACCESSD_SITE): enroll, list, "
                   "revoke and lost then work on the site database, and the office "
                   "commands (site, group, door, person, grant, import, publish) are "
                   "available.")
@click.option("--site-dir", "site_home", type=SafePath(file_okay=False),
              envvar="ACCESSD_SITE_DIR",
              help="With a postgresql:// --site: this terminal's site directory, which "
                   "holds the site's keys/ (or $ACCESSD_SITE_DIR).")
@click.version_option(__version__, prog_name="accessctl")
@click.pass_context
def main(ctx, config_path: str, site_dir: str | None, site_home: str | None) -> None:
    """Staff tool for accessd: a door (keys, enrolment, status, events, simulation)
    and, with --site, the office (people, doors, bundles).

    \b
    Examples:
      accessctl --config /etc/accessd/accessd.toml status
      accessctl --site /srv/accessd-site person list
      accessctl --site postgresql://office@db.lan/accessd --site-dir /srv/accessd-site \\
          person list
    """
    ctx.obj = Ctx(config_path, site_dir, site_home)


# ---- keys -----------------------------------------------------------------
@main.group()
def keys() -> None:
    """Manage the door's key file.

    \b
    Example:
      accessctl keys init
    """


@keys.command("init")
@click.pass_obj
def keys_init(obj: Ctx) -> None:
    """Create the key file (mode 0600) named by storage.key_file.

    Refuses to overwrite an existing key file: every enrolled credential
    depends on it.

    \b
    Example:
      sudo -u accessd accessctl --config /etc/accessd/accessd.toml keys init
    """
    cfg = obj.cfg(require_keys=False)
    k = generate()
    write_key_file(cfg.storage.key_file, k)
    click.echo(f"created {cfg.storage.key_file} (mode 0600, fingerprint {k.fingerprint})")


# ---- enrolment ------------------------------------------------------------
@main.command()
@click.option("--limit", type=click.IntRange(1, 10_000_000), default=50, show_default=True,
              help="The newest this many entries.")
@click.option("--staff", help="Only what this staff member (console account or OS user) did.")
@click.option("--person", help="Only lines about this person (id or name).")
@click.option("--action", help="Only this action, e.g. logs.search, or a family: credential.")
@click.option("--since", help="From 2026-11-21, 2026-11-21T18:00 (site time zone) or 7d (ago).")
@click.option("--until", help="Up to (not including) this time, same forms.")
@click.option("--verify", is_flag=True, help="Check the trail's hash chain and signed anchors.")
@json_opt
@click.pass_obj
def audit(obj: Ctx, limit, staff, person, action, since, until, verify, as_json) -> None:
    """For administrators and auditors: the site's audit trail. Every office action
    (enrol, revoke, forget, export, publish, pass, remote command, a log search naming
    a person) is one line: who, from which terminal, when, what. The lines are
    hash-chained; --verify recomputes the chain (exit 1 if it is broken).

    \b
    Examples:
      accessctl --site /srv/accessd-site audit --limit 20
      accessctl --site /srv/accessd-site audit --person p1a2b3c4 --action logs.search
      accessctl --site /srv/accessd-site audit --staff bo --since 2026-12-01
      accessctl --site /srv/accessd-site audit --verify
    """
    site = site_of(obj)
    tz = site.timezone
    if verify:
        rep = site.audit_verify()

        def said():
            for p in rep["problems"]:
                console.print(f"[red]{p}[/red]")
            console.print(f"{rep['lines']} lines, {rep['anchors']} signed anchors, head "
                          f"{rep['head'][:16]}: " + ("chain intact" if not rep["problems"]
                                                     else "BROKEN"))
        _out(as_json, rep, said)
        if rep["problems"]:
            sys.exit(1)
        return
    who = site.person_named(person) if person else None
    rows = site.audit_log(limit, staff=staff, person=who, action=action,
                          since=parse_when(since, tz=tz, past=True, param="--since")
                          if since else None,
                          until=parse_when(until, tz=tz, past=True, param="--until")
                          if until else None)
    names = site.audit_names(rows)
    for r in rows:
        r["text"] = site.audit_text(r, names)

    def human():
        t = Table(title=f"audit (times in {tz})")
        for col in ("#", "time", "who", "terminal", "event", "detail"):
            t.add_column(col)
        for r in rows:
            t.add_row(str(r["id"]), _fmt_time(r["ts"], tz), r["actor"], r["terminal"],
                      r["event"], r["text"])
        console.print(t)
    _out(as_json, rows, human)


# ---- the running daemon -----------------------------------------------------
@main.command()
@json_opt
@click.pass_obj
def status(obj: Ctx, as_json: bool) -> None:
    """Show the running door: relay, door contact, alarms, readers, log.

    \b
    Example:
      accessctl status
    """
    with obj.client() as c:
        st = _reply(c.request({"op": "status"}))

    def human():
        t = Table(title=f"door {st['door']}", show_header=False)
        t.add_column("what")
        t.add_column("value")
        t.add_row("relay", st["relay"])
        t.add_row("door", "open" if st["door_open"] else "closed")
        t.add_row("mode", f"{st['mode']} (fail-{st['fail_mode']})")
        t.add_row("alarms", ", ".join(st["alarms"]) or "none")
        t.add_row("whitelist", f"{plural(st['whitelist']['credentials'], 'credential')}, "
                               f"version {st['whitelist']['version']}")
        lg = st["log"]
        t.add_row("event log", f"last #{lg['last_seq']}, {lg['pending']} pending"
                  + (f", DEGRADED: {lg['error']}" if lg["degraded"] else ""))
        for r in st["readers"]:
            seen = _fmt_time(r["last_seen"]) if r["last_seen"] else "never"
            detail = f" ({r['detail']})" if r["detail"] and r["detail"] != r["state"] else ""
            sc = ", secure channel" if r.get("secure_channel") else ""
            t.add_row(f"reader {r['name']}", f"{r['kind']}: {r['state']}{detail}{sc}, "
                                             f"last credential {seen}")
        if "sync" in st:
            t.add_row("sync", f"{st['sync']['last']} (from {st['sync']['store']}, every "
                              f"{st['sync']['interval_s']:g} s)")
        if "live" in st:
            lv = st["live"]
            t.add_row("live (MQTT)", f"{lv['link']} ({lv['broker']}); published to "
                                     f"#{lv['acked_seq']}, backlog {lv['backlog']}")
        if "clock" in st:
            ck = st["clock"]
            t.add_row("clock", ("synchronised" if ck["synced"] else "NOT synchronised")
                      + f" (from {ck['source']}; policy {ck['policy']})"
                      + (f", cannot read the kernel's state: {ck['error']}" if ck.get("error")
                         else ""))
        if st.get("control"):
            t.add_row("control socket", f"{st['control']['connections']} of "
                                        f"{st['control']['max_connections']} connections")
        t.add_row("counters", ", ".join(f"{k} {v}" for k, v in st["counters"].items()))
        t.add_row("uptime", f"{st['uptime_s']:.0f} s")
        console.print(t)
        console.print(f"[dim]{st['assurance_note']}[/dim]")
    _out(as_json, st, human)


@main.command()
@click.option("--token", help="A signed token from the office (accessctl token).")
@json_opt
@click.pass_obj
def unlock(obj: Ctx, token: str | None, as_json: bool) -> None:
    """Unlock the door for its unlock time (logged with your user id, and the
    token's issuer when one is given).

    \b
    Examples:
      accessctl unlock
      accessctl unlock --token eyJkb29yIjoi...
    """
    with obj.client() as c:
        r = _reply(c.request({"op": "unlock", **({"token": token} if token else {})}))
    _out(as_json, r, lambda: click.echo(f"door unlocked (event #{r.get('seq')})"))


@main.command()
@click.argument("new_mode", type=click.Choice(["normal", "lockdown", "held-open"]))
@json_opt
@click.pass_obj
def mode(obj: Ctx, new_mode: str, as_json: bool) -> None:
    """Set the door mode: normal, lockdown (staff only) or held-open (e.g. moving day).

    Logged with your user id.

    \b
    Examples:
      accessctl mode held-open
      accessctl mode normal
    """
    with obj.client() as c:
        r = _reply(c.request({"op": "mode", "mode": new_mode}))
    _out(as_json, r, lambda: click.echo(f"door mode {r['mode']}; relay {r['relay']}"))


def _event_line(e: dict) -> str:
    cred = f" {e['credential']}" if e["credential"] else ""
    return f"#{e['seq']:<6} {e['ts']}  {e['kind']:<16}{cred}  {e['reason']}"


@main.command()
@click.option("--since", help="Only events since: 2026-11-21T08:00, 2026-11-21 or 1h (ago).")
@click.option("--after", type=click.IntRange(0, 2**62), default=0,
              help="Only events with a sequence number above this one.")
@click.option("--limit", type=click.IntRange(1, 10_000_000), help="At most this many events.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they arrive.")
@click.option("--verify", is_flag=True, help="Check the hash chain instead of listing.")
@json_opt
@click.pass_obj
def events(obj: Ctx, since, after, limit, follow, verify, as_json) -> None:
    """Show the door's event log (read-only; safe while the daemon runs).

    \b
    Examples:
      accessctl events --since 1h
      accessctl events --after 120 --json
      accessctl events --follow
      accessctl events --verify
    """
    since_ts = evlog.utc_iso(parse_when(since, past=True)) if since else None
    cfg = obj.cfg(require_keys=False)
    conn = evlog.open_reader(cfg.storage.eventlog_path)
    if verify:
        rep = evlog.verify_chain(conn)
        res = {"ok": rep.ok, "records": rep.records, "first": rep.first_seq,
               "last": rep.last_seq, "gaps": rep.gaps, "bad": rep.bad}
        _out(as_json, res, lambda: click.echo(
            f"{plural(rep.records, 'record')} #{rep.first_seq}..#{rep.last_seq}: "
            + ("chain intact" if rep.ok else f"gaps {rep.gaps}, bad {rep.bad}")))
        sys.exit(0 if rep.ok else 1)
    last = after
    for e in evlog.iter_events(conn, after_seq=after, since_ts=since_ts, limit=limit):
        click.echo(json.dumps(e) if as_json else _event_line(e))
        last = e["seq"]
    while follow:
        try:
            time.sleep(0.3)  # a human-facing poll, not a timer under test
            for e in evlog.iter_events(conn, after_seq=last):
                click.echo(json.dumps(e) if as_json else _event_line(e))
                last = e["seq"]
        except KeyboardInterrupt:
            return


# ---- simulation ------------------------------------------------------------
from . import (credential_cmds, door_cmds, live_cmds, log_cmds, pass_cmds,  # noqa: E402
               people_cmds, policy_cmds, publish_cmds, release_cmds, sim_cmds, site_cmds,
               staff_cmds)

for _module in (credential_cmds, sim_cmds, site_cmds, policy_cmds, door_cmds, people_cmds,
                publish_cmds, release_cmds, log_cmds, staff_cmds):
    for _command in _module.COMMANDS:
        main.add_command(_command)
live_cmds.register(main)
pass_cmds.register(main)

if __name__ == "__main__":
    main()
