"""Credentials in `accessctl`: enrol (at a door, or with --site at the office, by number, by
capture at a door or on the office reader), secure cards, list, revoke, report lost.

Credential values are never printed: a credential shows as its id and a short fingerprint.
"""

from __future__ import annotations

import json
import sys
import time

import click
from rich.table import Table

from ..core.credentials import KINDS, SECURE_CARDS, normalize
from ..errors import AccessdError, CredentialFormatError, StoreError
from ..site.db import OFFICE_PIN
from ..storage.crypto import fingerprint
from .common import (Ctx, console, fail, fmt_time as _fmt_time,
                     json_opt, out as _out, parse_when, plural, reply as _reply,
                     site_of)


@click.command()
@click.option("--kind", type=click.Choice(KINDS + SECURE_CARDS), required=True,
              help="Credential kind; ntag424, desfire: personalise a blank NTAG 424 DNA or "
                   "MIFARE DESFire EV2/EV3 on the office reader (--site, --nfc-reader) as a "
                   "high-assurance card.")
@click.option("--holder", help="At a door (without --site): who holds it, an id from the "
                                "office, e.g. 12A-1.")
@click.option("--person", help="At the office (--site): the person it belongs to.")
@click.option("--nfc-reader", help="At the office: read the card on an NFC reader on this "
                                   "machine (an nfcpy path, e.g. usb).")
@click.option("--duress", is_flag=True, help="At the office, PINs: a duress PIN (opens the "
                                              "door and raises a silent alarm).")
@click.option("--uses", type=click.IntRange(1, 100_000),
              help="At the office: a pass good for this many entries at each door.")
@click.option("--uid", "value", help="The card UID, or a fob's number in any printed form: "
                                     "decimal (0045131261), facility:card (176:42493), the "
                                     "10 hex digits of the EM ID (0102B0A5FD) or its 13 "
                                     "digits, 0x and up to 8 hex digits for its 32-bit "
                                     "number (0x02B0A5FD), raw<bits>:<hex> for a raw "
                                     "Wiegand frame (not for PINs).")
@click.option("--capture", is_flag=True, help="Take the next credential presented at the door.")
@click.option("--capture-at", metavar="DOOR", help="At the office: take the next card or "
              "fob presented at DOOR, over the live channel (MQTT).")
@click.option("--capture-timeout", default=30, show_default=True, type=click.IntRange(1, 600),
              help="Seconds to wait for --capture.")
@click.option("--pin-stdin", is_flag=True, help="Read the PIN from standard input (scripts).")
@click.option("--valid-from", help="Start of validity: 2026-12-01 (from the start of that "
                                    "day), 2026-12-01T08:00 or 2h; in the site's time zone.")
@click.option("--valid-until", help="End of validity: 2026-12-31 (through the end of that "
                                     "day), 2026-12-31T18:00 or 7d; in the site's time zone.")
@click.option("--force", is_flag=True, help="Enrol even with a --valid-until in the past.")
@json_opt
@click.pass_obj
def enroll(obj: Ctx, kind, holder, person, nfc_reader, duress, uses, value, capture,
           capture_at, capture_timeout, pin_stdin, valid_from, valid_until, force, as_json) -> None:
    """Enrol a credential: into this door's whitelist, or with --site into the
    site database for a person (then publish).

    A PIN is typed at a hidden prompt (twice); a card or fob is given with
    --uid, captured from a door's reader with --capture (through --config's
    control socket), or, at the office, read with --nfc-reader.

    \b
    Examples:
      accessctl enroll --kind nfc --holder 12A-1 --uid 04A1B2C3 --valid-until 2027-06-30
      accessctl enroll --kind fob --holder 12A-2 --capture
      accessctl enroll --kind pin --holder 12A-1
      accessctl --site /srv/site enroll --person p1a2b3c4 --kind nfc --nfc-reader usb
      accessctl --site /srv/site enroll --person p1a2b3c4 --kind fob --capture-at front
      accessctl --site /srv/site enroll --person p1a2b3c4 --kind ntag424 --nfc-reader usb
      accessctl --site /srv/site enroll --person p1a2b3c4 --kind desfire --nfc-reader usb
    """
    if kind in SECURE_CARDS:
        _enroll_secure(obj, kind, person, holder, nfc_reader, capture_timeout, valid_from,
                       valid_until, force, as_json,
                       others=value or capture or capture_at or pin_stdin or duress)
        return
    if obj.site_dir:
        if not person or holder:
            raise click.UsageError("with --site, name the --person (not --holder)")
        site = site_of(obj)
        tz = site.timezone
        who = site.person(person)
        vf, vu = _validity(valid_from, valid_until, tz, force)
        if capture_at:
            if value or capture or nfc_reader or kind == "pin":
                raise click.UsageError("--capture-at takes a card or fob, instead of --uid, "
                                       "--capture and --nfc-reader")
            value = _capture_remote(site, kind, capture_at, capture_timeout)
        if capture and not (value or nfc_reader) and kind != "pin":
            value = _capture_signed(obj, site, kind, capture_timeout)
            capture = False
        value = _credential_value(obj, kind, value, capture, capture_timeout, pin_stdin,
                                  nfc_reader, limits=OFFICE_PIN)
        rec = site.credential_add(who.id, kind, value, valid_from=vf, valid_until=vu,
                                  duress=duress, max_uses=uses)
        _out(as_json, rec, lambda: click.echo(
            f"enrolled {'a duress PIN (it opens and raises a silent alarm)' if duress else kind}"
            f" {rec['id']} ({rec['fingerprint']}) for {site.label(who)}"
            + _validity_words(vf, vu, tz) + "; run 'accessctl publish' to update the doors"))
        return
    if duress or uses or capture_at:
        raise click.UsageError("--duress, --uses and --capture-at need --site: they are "
                               "office options")
    if not holder or not holder.strip() or len(holder) > 64:
        raise click.BadParameter("must be 1-64 characters", param_hint="--holder")
    cfg = obj.cfg()
    vf, vu = _validity(valid_from, valid_until, None, force)
    if capture and not value and kind != "pin":
        # the door captures and enrols it itself: its number never leaves the daemon
        click.echo(f"present the {kind} to any reader of door {cfg.door.id} "
                   f"(waiting {capture_timeout} s)...", err=True)
        with obj.client() as c:
            got = _reply(c.request({"op": "capture", "timeout": capture_timeout,
                                    "enroll": {"holder": holder.strip(), "valid_from": vf,
                                               "valid_until": vu}},
                                   timeout=capture_timeout + 15))
        if got["kind"] != kind:
            fail(f"captured a {got['kind']} credential, not a {kind}: not enrolled")
        _out(as_json, got, lambda: click.echo(
            f"enrolled {kind} {got['credential']} ({got['fingerprint']}) for "
            f"{holder.strip()}" + _validity_words(vf, vu, None)))
        return
    value = _credential_value(obj, kind, value, capture, capture_timeout, pin_stdin, None,
                              limits=(cfg.pin.min_length, cfg.pin.max_length))
    admin = obj.admin()
    try:
        rec = admin.enroll(kind, value, holder.strip(), valid_from=vf, valid_until=vu)
        fp = admin.fingerprint(kind, value)
    finally:
        admin.close()
    result = {"credential": rec.credential_id, "fingerprint": fp, **rec.to_row()}
    _out(as_json, result, lambda: click.echo(
        f"enrolled {kind} {rec.credential_id} ({fp}) for {rec.holder}"
        + _validity_words(vf, vu, None)))


def _enroll_secure(obj: Ctx, kind, person, holder, nfc_reader, timeout, valid_from,
                   valid_until, force, as_json, others) -> None:
    """Personalise a blank secure card on the office reader and enrol it (high)."""
    from ..site import secure_cards
    if not obj.site_dir or not person or holder:
        raise click.UsageError(f"--kind {kind} is enrolled at the office: give --site and "
                               "--person")
    if not nfc_reader:
        raise click.UsageError(f"--kind {kind} needs the office's --nfc-reader: the card is "
                               "personalised on it")
    if others:
        raise click.UsageError(f"--kind {kind} takes its UID from the card itself (no --uid, "
                               "--capture, --capture-at, --pin-stdin or --duress)")
    site = site_of(obj)
    who = site.person(person)
    vf, vu = _validity(valid_from, valid_until, site.timezone, force)
    master = site.card_master()

    def free(value: str) -> None:
        holder_id = site.credential_holder("nfc", value)
        if holder_id is not None:
            raise StoreError(f"that card is already enrolled to "
                             f"{site.label(site.person(holder_id))}")
        site.credential_check("nfc", value)

    click.echo(f"hold the blank card on the reader (waiting {timeout} s)...", err=True)
    value, keys, done = secure_cards.on_office_reader(
        nfc_reader, timeout,
        lambda send, uid: secure_cards.personalise(send, uid, master, free, kind))
    rec = site.credential_add(who.id, "nfc", value, valid_from=vf, valid_until=vu,
                              card=(kind, keys.to_hex()))
    _out(as_json, {**rec, "card": kind, "done": done}, lambda: click.echo(
        f"enrolled {kind} card {rec['id']} ({rec['fingerprint']}, assurance high; card "
        f"{done}) for {site.label(who)}" + _validity_words(vf, vu, site.timezone)
        + "; run 'accessctl publish' to update the doors"))


def _validity(valid_from, valid_until, tz, force) -> tuple[float | None, float | None]:
    """--valid-from/--valid-until in the site's time zone (this machine's at a door): a
    date alone starts at the beginning of that day and ends at its end. An end in the
    past is refused unless --force: such a credential would open no door."""
    now = time.time()
    vf = parse_when(valid_from, tz=tz, now=now, param="--valid-from") if valid_from else None
    vu = (parse_when(valid_until, tz=tz, end=True, now=now, param="--valid-until")
          if valid_until else None)
    if vf is not None and vu is not None and vu <= vf:
        raise click.BadParameter(f"{valid_until!r} is not after --valid-from {valid_from!r}",
                                 param_hint="--valid-until")
    if vu is not None and vu <= now and not force:
        raise click.BadParameter(
            f"{valid_until!r} is in the past (ended {_fmt_time(vu, tz, end=True)}"
            f"{' ' + tz if tz else ''}): the credential would open no door; add --force "
            "to enrol it anyway", param_hint="--valid-until")
    return vf, vu


def _validity_words(vf, vu, tz) -> str:
    if vf is None and vu is None:
        return ", valid without an end"
    zone_name = f" {tz}" if tz else ""
    return (f", valid {_fmt_time(vf, tz) if vf is not None else 'now'} .. "
            f"{_fmt_time(vu, tz, end=True) if vu is not None else 'no end'}{zone_name}")


def _credential_value(obj: Ctx, kind, value, capture, capture_timeout, pin_stdin, nfc_reader,
                      *, limits) -> str:
    """The credential's value: typed PIN, --uid, --capture at a door, or an office reader."""
    if kind == "pin":
        if value or capture or nfc_reader:
            raise click.UsageError("a PIN is typed, not given with --uid or captured")
        if pin_stdin:
            value = sys.stdin.readline().strip()
            if not value:
                raise click.BadParameter("no PIN on standard input", param_hint="--pin-stdin")
        elif not sys.stdin.isatty():
            raise click.UsageError("no terminal to type the PIN at: pipe it in with "
                                   "--pin-stdin (printf '1234\\n' | accessctl enroll ... "
                                   "--pin-stdin)")
        else:
            value = click.prompt("PIN", hide_input=True, confirmation_prompt=True)
    elif capture or nfc_reader:
        if value or (capture and nfc_reader):
            raise click.UsageError("use one of --uid, --capture and --nfc-reader")
        value = _read_office_nfc(nfc_reader, capture_timeout)
    elif not value:
        raise click.UsageError("give --uid VALUE or --capture")
    try:
        return normalize(kind, value, pin_min=limits[0], pin_max=limits[1])
    except CredentialFormatError as exc:
        raise click.BadParameter(str(exc), param_hint=None if kind == "pin" else "--uid")


def _capture_signed(obj: Ctx, site, kind: str, timeout: int) -> str:
    """At an office terminal beside a door (--config): the door's capture as the live
    channel does it, a command signed by the site over the control socket, the number
    sealed to a one-off key of ours (the socket's other users never see it)."""
    import time as _time

    from ..live import commands as wire
    from ..site.db import os_user
    cfg = obj.cfg(require_keys=False)
    priv, pub = wire.reply_keypair()
    message, _ = wire.sign(site.keys.signing, site=site.site_id, door=cfg.door.id,
                           cmd="capture", args={"timeout": timeout, "reply_key": pub},
                           now=_time.time(), ttl=min(300, timeout + 60), by=os_user())
    click.echo(f"present the {kind} to any reader of door {cfg.door.id} "
               f"(waiting {timeout} s)...", err=True)
    with obj.client() as c:
        ack = c.request({"op": "command", "message": message.decode()}, timeout=timeout + 15)
    if not ack.get("ok"):
        fail(f"door {cfg.door.id}: {ack.get('error') or 'nothing was captured'}")
    try:
        got = json.loads(wire.open_reply(priv, ack["sealed"]))
    except (KeyError, ValueError, AccessdError):
        fail(f"door {cfg.door.id}: its capture reply cannot be read")
    if got.get("kind") != kind:
        fail(f"captured a {got.get('kind')} credential, but --kind is {kind}")
    return str(got["value"])


def _capture_remote(site, kind: str, door: str, timeout: int) -> str:
    """A card or fob presented at a door of the site, over the live channel."""
    from ..live import office
    site.door(door)
    click.echo(f"present the {kind} at door {door} (waiting {timeout} s)...", err=True)
    with office.connect(site) as oc:
        got_kind, value = office.remote_capture(oc, site.keys.signing, door, timeout)
    if got_kind != kind:
        fail(f"captured a {got_kind} credential, but --kind is {kind}")
    return value


def _read_office_nfc(path: str, timeout: float) -> str:
    """One card from an NFC reader on the office machine, through nfcpy."""
    from ..errors import HardwareError
    from ..site.office_reader import read_uid
    click.echo(f"tap the card on the reader (waiting {timeout} s)...", err=True)
    try:
        return read_uid(path, timeout)
    except HardwareError as exc:
        fail(str(exc))


@click.group("card")
def card_group() -> None:
    """Secure cards (NTAG 424 DNA, MIFARE DESFire EV2/EV3) on the office's NFC reader.

    \b
    Example:
      accessctl --site /srv/site card check --nfc-reader usb
    """


@card_group.command("check")
@click.option("--nfc-reader", required=True, help="The office's NFC reader (an nfcpy path, "
                                                  "e.g. usb or tty:USB0:pn532).")
@click.option("--timeout", default=30, show_default=True, type=click.IntRange(1, 600),
              help="Seconds to wait for a card.")
@json_opt
@click.pass_obj
def card_check(obj: Ctx, nfc_reader, timeout, as_json) -> None:
    """Read a card's type and state back: blank (ready to enrol), this site's (its
    keys check out: an NTAG 424 DNA's SUN message and read counter too; and who it is
    enrolled to), or foreign (keys unknown here).

    \b
    Example:
      accessctl --site /srv/site card check --nfc-reader usb
    """
    from ..site import secure_cards
    site = site_of(obj) if obj.site_dir else None
    master = site.card_master() if site is not None else None
    click.echo(f"hold the card on the reader (waiting {timeout} s)...", err=True)
    doc = secure_cards.on_office_reader(
        nfc_reader, timeout,
        lambda send, uid: {**secure_cards.check(send, uid, master), "uid": uid.hex().upper()})
    uid = doc.pop("uid")
    if site is not None:
        doc["fingerprint"] = site.fingerprint("nfc", uid)
        pid = site.credential_holder("nfc", uid)
        doc["enrolled_to"] = site.label(site.person(pid)) if pid else None
    _out(as_json, doc, lambda: click.echo(
        f"{'DESFire' if doc['card'] == 'desfire' else 'NTAG 424 DNA'} {doc['state']}: "
        f"{doc['detail']}"
        + (f"; read counter {doc['counter']}" if "counter" in doc else "")
        + (f"; card {doc['fingerprint']}" if "fingerprint" in doc else "")
        + (f", enrolled to {doc['enrolled_to']}" if doc.get("enrolled_to") else
           (", not enrolled" if site is not None else ""))))


@click.command("list")
@click.option("--revoked", is_flag=True, help="With --site: list revoked credentials too.")
@json_opt
@click.pass_obj
def list_(obj: Ctx, revoked: bool, as_json: bool) -> None:
    """List the enrolled credentials (never their values): this door's, or with
    --site the site's.

    \b
    Examples:
      accessctl list --json
      accessctl --site /srv/accessd-site list
    """
    if obj.site_dir:
        site = site_of(obj)
        tz = site.timezone
        names = {p.id: site.label(p) for p in site.people()}
        rows = [{**r, "name": names.get(r["person"], r["person"])}
                for r in site.credentials(revoked=revoked)]

        def human_site():
            t = Table(title=f"{plural(len(rows), 'credential')} (times in {tz})")
            for col in ("id", "person", "kind", "status", "valid from", "valid until",
                        "fingerprint"):
                t.add_column(col)
            for r in rows:
                t.add_row(r["id"], r["name"], r["kind"], r["status"],
                          _fmt_time(r["valid_from"], tz),
                          _fmt_time(r["valid_until"], tz, end=True), r["fingerprint"])
            console.print(t)
        _out(as_json, rows, human_site)
        return
    if revoked:
        raise click.UsageError("--revoked needs --site: a door forgets revoked credentials")
    admin = obj.admin()
    try:
        rows = [{"credential": r.credential_id, "fingerprint": fingerprint(d), **r.to_row()}
                for d, r in admin.iter_records()]
    finally:
        admin.close()
    rows.sort(key=lambda r: (r["holder"], r["credential"]))

    def human():
        t = Table(title=plural(len(rows), "credential"))
        for col in ("id", "holder", "kind", "assurance", "status", "valid from", "valid until",
                    "fingerprint"):
            t.add_column(col)
        for r in rows:
            t.add_row(r["credential"], r["holder"], r["kind"], r["assurance"], r["status"],
                      _fmt_time(r["from"]), _fmt_time(r["until"], end=True), r["fingerprint"])
        console.print(t)
    _out(as_json, rows, human)


@click.command()
@click.argument("credential_id")
@click.option("--mark", type=click.Choice(["lost", "suspended"]),
              help="Keep it, marked, so a later use is flagged (default: delete).")
@json_opt
@click.pass_obj
def revoke(obj: Ctx, credential_id: str, mark: str | None, as_json: bool) -> None:
    """Revoke a credential by its id (see `accessctl list`); with --site, in the
    site database (then publish). At the office a revoked credential is still
    remembered as its holder's, so the log names an ex-tenant trying an old card.

    \b
    Examples:
      accessctl revoke c1a2b3c4d5
      accessctl revoke c1a2b3c4d5 --mark lost
    """
    if obj.site_dir:
        site = site_of(obj)
        person_id, kind = site.credential_status(credential_id, mark)
        what = f"marked {mark}" if mark else "revoked"
        label = site.label(site.person(person_id))
        _out(as_json, {"credential": credential_id, "result": what, "person": person_id},
             lambda: click.echo(f"{credential_id} ({kind} of {label}) {what}; run "
                                "'accessctl publish' to update the doors (the log keeps "
                                "naming its holder)"))
        return
    admin = obj.admin()
    try:
        rec = admin.revoke(credential_id, mark=mark)
    finally:
        admin.close()
    what = f"marked {mark}" if mark else "removed"
    _out(as_json, {"credential": rec.credential_id, "result": what},
         lambda: click.echo(f"{rec.credential_id} ({rec.kind}, {rec.holder}) {what}"))


@click.command()
@click.argument("credential_id")
@json_opt
@click.pass_context
def lost(ctx, credential_id: str, as_json: bool) -> None:
    """Report a card or fob lost: kept, marked, so a later use is flagged.

    \b
    Example:
      accessctl --site /srv/accessd-site lost c1a2b3c4d5
    """
    ctx.invoke(revoke, credential_id=credential_id, mark="lost", as_json=as_json)


COMMANDS = [enroll, card_group, list_, revoke, lost]
