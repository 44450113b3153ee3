"""Office commands of `accessctl` for the live channel (with --site DIR): the broker's
accounts and ACL (`broker setup`), signed commands to a door (`remote ...`), the
live view of the estate (`watch`), and alarms (`alarms`, `ack`).

Each command parses, calls accessd.site / accessd.live, prints.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ..errors import BrokerError
from .common import FloatRange, SafePath, console, fail, fmt_time, iso_local, json_opt, out, site_of

broker_opt = click.option("--broker", "broker_url", metavar="URL",
                          help="The broker (mqtt://HOST:PORT or mqtts://); default: the one "
                               "'broker setup' recorded.")


def _listener(text: str, tls: bool) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{text!r}: give HOST:PORT, e.g. 0.0.0.0:"
                                 f"{8883 if tls else 1883}", param_hint="--listen")
    return host, int(port)


def register(main) -> None:
    @main.group("broker")
    def broker_group() -> None:
        """The site's MQTT broker (Mosquitto): door accounts, ACL, configuration.

        \b
        Example:
          accessctl --site /srv/site broker setup /tmp/broker --url mqtt://office.lan:1883
        """

    @broker_group.command("setup")
    @click.argument("out_dir", type=SafePath(file_okay=False, path_type=Path))
    @click.option("--url", required=True, help="How the doors reach the broker: "
                  "mqtt://HOST:1883, or mqtts://HOST:8883 with TLS.")
    @click.option("--listen", default=None, metavar="HOST:PORT",
                  help="Where Mosquitto listens [default: 0.0.0.0:1883, 0.0.0.0:8883 with TLS].")
    @click.option("--install-dir", default="/etc/mosquitto/accessd", show_default=True,
                  type=SafePath(path_type=Path),
                  help="Where you will copy mosquitto/passwd and acl on the broker machine.")
    @click.option("--tls-cert", type=SafePath(exists=True, dir_okay=False, path_type=Path),
                  help="The broker's certificate (PEM) for a TLS listener.")
    @click.option("--tls-key", type=SafePath(exists=True, dir_okay=False, path_type=Path),
                  help="The broker's private key (PEM).")
    @click.option("--ca-file", type=SafePath(exists=True, dir_okay=False, path_type=Path),
                  help="The CA certificate doors and the office check the broker with.")
    @click.option("--rotate", is_flag=True,
                  help="New passwords for every account (then install them on every door).")
    @click.option("--no-home-assistant", is_flag=True,
                  help="Do not let doors publish Home Assistant discovery messages.")
    @json_opt
    @click.pass_obj
    def broker_setup(obj, out_dir, url, listen, install_dir, tls_cert, tls_key, ca_file,
                     rotate, no_home_assistant, as_json):
        """Write the broker's files and each door's MQTT settings into OUT_DIR.

        \b
        OUT_DIR/mosquitto/accessd.conf   -> /etc/mosquitto/conf.d/accessd.conf
        OUT_DIR/mosquitto/passwd, acl    -> --install-dir (hashed passwords; the ACL)
        OUT_DIR/doors/DOOR/mqtt-password -> the door's /etc/accessd/ (mode 0600)
        OUT_DIR/doors/DOOR/mqtt.toml     -> the door's [mqtt] section

        Passwords are derived from the site key: running it again (after adding a
        door) gives existing doors the same password; --rotate changes them all.
        The broker URL is remembered for 'watch' and 'remote'.

        \b
        Examples:
          accessctl --site /srv/site broker setup /tmp/broker --url mqtt://office.lan:1883
          accessctl --site /srv/site broker setup /tmp/broker --url mqtts://office.lan:8883 \\
              --tls-cert office.crt --tls-key office.key --ca-file ca.crt
        """
        from ..live.broker import Listener, setup
        site = site_of(obj)
        tls = tls_cert is not None or tls_key is not None
        host, port = _listener(listen or f"0.0.0.0:{8883 if tls else 1883}", tls)
        if tls and not (tls_cert and tls_key):
            raise click.UsageError("a TLS listener needs both --tls-cert and --tls-key")
        try:
            res = setup(site, out_dir, url=url, install_dir=install_dir,
                        listener=Listener(host, port, tls_cert, tls_key, ca_file),
                        ca_file=ca_file, rotate=rotate, home_assistant=not no_home_assistant)
        except BrokerError as exc:
            raise click.BadParameter(str(exc), param_hint="--url") from None
        out(as_json, {**res, "out": str(out_dir)}, lambda: click.echo(
            f"wrote {out_dir}/mosquitto/ (accessd.conf, passwd, acl) and "
            f"{len(res['doors'])} door setting(s) in {out_dir}/doors/; "
            f"office account {res['users'][0]}"
            + ("" if install_dir.resolve() == (out_dir / "mosquitto").resolve() else
               f"\non the broker machine: sudo install -d {install_dir} && sudo install -m 0640 "
               f"-g mosquitto {out_dir}/mosquitto/passwd {out_dir}/mosquitto/acl "
               f"{install_dir}/ && sudo cp {out_dir}/mosquitto/accessd.conf "
               "/etc/mosquitto/conf.d/ && sudo systemctl restart mosquitto")))

    # ---- commands to a door -----------------------------------------------------------
    @main.group("remote")
    def remote_group() -> None:
        """Signed commands to a door over the live channel (MQTT).

        Each command is signed with the site key, carries a nonce and lives
        --ttl seconds; the door refuses (and logs) anything unsigned, altered,
        replayed, expired or meant for another door, and answers with the outcome.

        \b
        Examples:
          accessctl --site /srv/site remote mode front lockdown
          accessctl --site /srv/site remote unlock front
        """

    def _send(obj, door, cmd, args, broker_url, ttl, timeout, as_json):
        from ..live import office   # (paho only for the commands that use it)
        ack = office.remote(site_of(obj), door, cmd, args, url=broker_url, ttl=ttl,
                            timeout=timeout)
        if as_json:
            click.echo(json.dumps(ack, indent=2, default=str))
        if not ack.get("ok"):
            fail(f"door {door}: {ack.get('error') or ack.get('result') or 'refused'}")
        return ack

    common = [broker_opt,
              click.option("--ttl", default=60, show_default=True, type=click.IntRange(1, 300),
                           help="Seconds the command stays valid."),
              click.option("--timeout", default=30, show_default=True,
                           type=click.IntRange(1, 600), help="Seconds to wait for the answer."),
              json_opt, click.pass_obj]

    def with_common(f):
        for deco in reversed(common):
            f = deco(f)
        return f

    @remote_group.command("sync-now")
    @click.argument("door")
    @with_common
    def remote_sync(obj, door, broker_url, ttl, timeout, as_json):
        """Make DOOR pull and apply its bundle now (waits at least 120 s for the answer:
        a door's sync may retry its store).

        \b
        Example:
          accessctl --site /srv/site remote sync-now front
        """
        ack = _send(obj, door, "sync-now", {}, broker_url, ttl, timeout, as_json)
        if not as_json:
            click.echo(f"door {door}: {ack.get('result', 'synced')}")

    @remote_group.command("mode")
    @click.argument("door")
    @click.argument("mode", type=click.Choice(("normal", "lockdown", "held-open")))
    @with_common
    def remote_mode(obj, door, mode, broker_url, ttl, timeout, as_json):
        """Set DOOR's mode: normal, lockdown (only staff) or held-open.

        \b
        Example:
          accessctl --site /srv/site remote mode front lockdown
        """
        ack = _send(obj, door, "mode", {"mode": mode}, broker_url, ttl, timeout, as_json)
        if not as_json:
            click.echo(f"door {door}: mode {ack.get('mode')}, relay {ack.get('relay')}")

    @remote_group.command("unlock")
    @click.argument("door")
    @with_common
    def remote_unlock(obj, door, broker_url, ttl, timeout, as_json):
        """Open DOOR once (a one-time unlock token inside a signed command).

        \b
        Example:
          accessctl --site /srv/site remote unlock front
        """
        ack = _send(obj, door, "unlock", {}, broker_url, ttl, timeout, as_json)
        if not as_json:
            click.echo(f"door {door}: unlocked (relay {ack.get('relay')})")

    @remote_group.command("capture")
    @click.argument("door")
    @click.option("--wait", "wait_s", default=30, show_default=True,
                  type=click.IntRange(1, 600), help="Seconds to wait for a card or fob.")
    @with_common
    def remote_capture(obj, door, wait_s, broker_url, ttl, timeout, as_json):
        """Read the next card or fob presented at DOOR and show its fingerprint (to
        enrol it, use 'enroll --capture-at DOOR').

        \b
        Example:
          accessctl --site /srv/site remote capture front --wait 60
        """
        site = site_of(obj)
        site.door(door)
        click.echo(f"present a card or fob at door {door} (waiting {wait_s} s)...", err=True)
        from ..live import office
        with office.connect(site, broker_url) as oc:
            kind, value = office.remote_capture(oc, site.keys.signing, door, wait_s)
        fp = site.fingerprint(kind, value)
        holder = site.credential_holder(kind, value)
        doc = {"kind": kind, "fingerprint": fp,
               "holder": site.label(site.person(holder)) if holder else None}
        out(as_json, doc, lambda: click.echo(
            f"{kind} {fp}: " + (f"enrolled to {doc['holder']}" if holder else "not enrolled")))

    # ---- watching ----------------------------------------------------------------------
    @main.command("watch")
    @click.option("--door", "doors", multiple=True, help="Only this door (repeatable).")
    @click.option("--json", "as_json", is_flag=True,
                  help="Print one JSON object per line (NDJSON) for scripts.")
    @click.option("--plain", is_flag=True, help="One line per event, no live screen.")
    @click.option("--count", type=click.IntRange(1, 10**9), help="Stop after this many new events.")
    @click.option("--seconds", type=FloatRange(0.1, 10**8), help="Stop after this long.")
    @click.option("--session", default="", metavar="NAME",
                  help="The broker session to resume [default: this host and user]; give "
                       "each watch running at once on one account its own.")
    @broker_opt
    @click.pass_obj
    def watch(obj, doors, as_json, plain, count, seconds, session, broker_url):
        """Watch the estate live: doors online or offline, open alarms, events with
        names. Events are stored in the site database as they arrive (the nightly
        upload then only fills gaps); alarms stay open until 'accessctl ack'.
        The broker keeps what arrives while this terminal is away (its session)
        and delivers it on the next watch. While the broker is lost it says NOT
        RECEIVING (on standard error, and on the live screen) and reconnects; what
        a broker lost (a crash, a restart without persistence) it asks each door
        for again, from the door's own log.

        \b
        Examples:
          accessctl --site /srv/site watch
          accessctl --site /srv/site watch --json | jq 'select(.alarm)'
        """
        from ..live.estate import Estate, plain_line, render
        site = site_of(obj)
        for d in doors:
            site.door(d)
        tz = site.timezone
        estate = Estate(site, doors=tuple(doors))
        if session and not all(c.isalnum() or c in "-_." for c in session):
            raise click.BadParameter("letters, digits, '-', '_' and '.' only",
                                     param_hint="--session")
        from ..live import office
        from ..live.watch import Watcher
        oc = office.connect(site, broker_url, persistent=True, session=session)
        watcher = Watcher(estate, oc, site.keys.signing)
        deadline = time.monotonic() + seconds if seconds else None
        live_screen = not as_json and not plain and console.is_terminal
        events = 0

        def show(lines) -> None:
            nonlocal events
            for line in lines:
                if as_json:
                    click.echo(json.dumps(line, default=str))
                elif not live_screen:
                    text = plain_line(line, tz)
                    if text:
                        click.echo(text, err=line["type"] == "link")
                events += line["type"] == "event"
            sys.stdout.flush()

        def loop(draw=None):
            while deadline is None or time.monotonic() < deadline:
                show(watcher.step(0.5))
                if draw:
                    draw()
                if count and events >= count:
                    return
        try:
            if live_screen:
                from rich.live import Live
                with Live(render(estate, tz), console=console, refresh_per_second=4,
                          screen=False) as lv:
                    loop(lambda: lv.update(render(estate, tz)))
            else:
                loop()
        except KeyboardInterrupt:
            pass
        finally:
            oc.close()

    @main.command("alarms")
    @click.option("--all", "show_all", is_flag=True, help="Acknowledged ones too.")
    @click.option("--door", help="Only this door.")
    @click.option("--limit", type=click.IntRange(1, 10_000_000), default=50, show_default=True)
    @json_opt
    @click.pass_obj
    def alarms(obj, show_all, door, limit, as_json):
        """List open alarms (newest first): forced, held open, duress, stranger,
        tamper, reader fault, log degraded, whitelist stale, clock unsynced.

        \b
        Examples:
          accessctl --site /srv/site alarms
          accessctl --site /srv/site alarms --all --door front
        """
        from ..alarms import label
        site = site_of(obj)
        if door:
            site.door(door)
        rows = site.alarms(open_only=not show_all, door=door, limit=limit)
        tz = site.timezone

        def human():
            if not rows:
                click.echo("no open alarms" if not show_all else "no alarms")
                return
            from rich.table import Table
            t = Table(title=f"{'Alarms' if show_all else 'Open alarms'} ({tz})",
                      title_justify="left")
            for col in ("#", "when", "door", "alarm", "what happened", "acknowledged"):
                t.add_column(col)
            for a in rows:
                t.add_row(str(a["id"]), iso_local(a["ts"], tz), a["door"], label(a["kind"]),
                          a["reason"], f"{a['acked_by']} {fmt_time(a['acked'], tz)}"
                          + (f": {a['note']}" if a["note"] else "") if a["acked"] else "")
            console.print(t)
        out(as_json, rows, human)

    @main.command("ack")
    @click.argument("alarm_ids", nargs=-1, required=True, type=click.IntRange(1, 2**62),
                    metavar="ALARM...")
    @click.option("--note", default="", help="What was found or done.")
    @click.pass_obj
    def ack(obj, alarm_ids, note):
        """Acknowledge alarms by number (from 'accessctl alarms'); who and when are kept.

        \b
        Example:
          accessctl --site /srv/site ack 12 --note "door checked, closer replaced"
        """
        site = site_of(obj)
        for a in alarm_ids:
            r = site.alarm_ack(a, note)
            click.echo(f"alarm #{a} acknowledged by {r['acked_by']}")
