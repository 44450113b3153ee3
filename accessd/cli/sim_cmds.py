"""`accessctl sim`: feed simulated inputs to a door running with simulated hardware
(taps, QR codes, PIN keys, door contact, exit button, fire panel, tamper), and make
simulated card images.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..core.credentials import SECURE_CARDS, normalize
from ..errors import CredentialFormatError
from .common import (Ctx, FloatRange, SafePath, fail, json_opt, out as _out, read_path, reply as _reply)


@click.group()
def sim() -> None:
    """Feed simulated inputs to a door running with api.simulation = true.

    \b
    Example:
      accessctl --config config/sim.toml sim tap 04A1B2C3
    """


def _sim(obj: Ctx, req: dict, as_json: bool) -> None:
    with obj.client() as c:
        r = _reply(c.request({"op": "sim", **req}))

    def human():
        click.echo(sim_words(r))
    _out(as_json, r, human)


def sim_words(r: dict) -> str:
    """One line for a simulated input's outcome, e.g. 'DENIED fp:3ed3c561db at front-nfc:
    unknown credential. relay: still unlocked from the previous grant'"""
    if "decision" in r:
        decision = r["decision"]
        reason = r.get("reason") or ""
        for prefix in (f"{decision}: ", decision):   # 'denied: expired' -> 'expired'
            if reason.startswith(prefix):
                reason = reason[len(prefix):].strip()
                break
        cred = f" {r['credential']}" if r.get("credential") else ""
        where = f" at {r['reader']}" if r.get("reader") else ""
        relay = r.get("relay") or ""
        if relay == "unlocked" and decision != "granted":
            relay = "still unlocked from the previous grant"
        return (f"{decision.upper()}{cred}{where}" + (f": {reason}" if reason else "") + "."
                + (f" relay: {relay}" if relay else ""))
    alarms = ", ".join(r.get("alarms", [])) or "none"
    return (f"relay: {r['relay']}, door: {'open' if r['door_open'] else 'closed'}, "
            f"alarms: {alarms}")


reader_opt = click.option("--reader", help="Which simulated reader (default: the first).")


@sim.command()
@click.argument("uid", required=False)
@click.option("--card", "card_file", type=SafePath(dir_okay=False, path_type=Path),
              help="Tap this simulated secure card instead (a file from 'sim card new'; its "
                   "read counter is written back). Needs an nfc reader on udp.")
@reader_opt
@json_opt
@click.pass_obj
def tap(obj, uid, card_file, reader, as_json):
    """Tap an NFC card with this UID, or a simulated secure card.

    \b
    Examples:
      accessctl sim tap 04A1B2C3
      accessctl sim tap --card resident.card
    """
    if (uid is None) == (card_file is None):
        raise click.UsageError("give a UID or --card FILE")
    req = {"input": "tap", **({"reader": reader} if reader else {})}
    if card_file is None:
        _sim(obj, {**req, "uid": uid}, as_json)
        return
    card = _card_file(card_file)   # a bad file is named before the door is asked
    with obj.client() as c:
        r = c.request({"op": "sim", **req, "card": card.image()})
    if isinstance(r, dict) and isinstance(r.get("card"), dict):
        _write_card_image(card_file, r.pop("card"))
    r = _reply(r)
    _out(as_json, r, lambda: click.echo(sim_words(r)))


@sim.command("qr")
@click.argument("text")
@reader_opt
@json_opt
@click.pass_obj
def sim_qr(obj, text, reader, as_json):
    """Scan a QR code: TEXT is what the scanner prints (a pass from 'accessctl pass
    issue', or anything else). A file name prefixed with @ is read instead.

    \b
    Examples:
      accessctl sim qr @visitor.pass
      accessctl sim qr "https://example.com/not-a-pass"
    """
    if text.startswith("@"):
        try:
            text = read_path(text[1:], "TEXT").decode().strip()
        except UnicodeDecodeError:
            raise click.BadParameter(f"{text[1:]} is not text (an image of the code?): give "
                                     "the pass's text as 'pass issue' printed it, or a file "
                                     "holding it", param_hint="TEXT") from None
    _sim(obj, {"input": "qr", "text": text, **({"reader": reader} if reader else {})}, as_json)


def _card_file(path: Path):
    """The simulated secure card kept in PATH; a clear error if it is not one."""
    from ..protocols.cards import card_from_image
    data = read_path(path, "--card")
    try:
        return card_from_image(json.loads(data))
    except (ValueError, RecursionError) as exc:   # JSONDecodeError and bad UTF-8 are ones
        raise click.BadParameter(f"{path}: {exc}", param_hint="--card")


def _write_card_image(path: Path, image: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(image, indent=1) + "\n")
    tmp.replace(path)


@sim.group("card")
def sim_card() -> None:
    """Simulated secure cards (NTAG 424 DNA, MIFARE DESFire EV3) kept in files.

    \b
    Example:
      accessctl sim card new resident.card
    """


@sim_card.command("new")
@click.argument("path", type=SafePath(dir_okay=False, path_type=Path))
@click.option("--uid", help="Its 7-byte UID in hex (default: a random NXP one, 04...).")
@click.option("--type", "card_type", type=click.Choice(SECURE_CARDS),
              default="ntag424", show_default=True,
              help="ntag424: a blank NTAG 424 DNA; desfire: a blank MIFARE DESFire EV3.")
def sim_card_new(path, uid, card_type):
    """Make a blank secure card, as NXP ships it, in PATH.

    \b
    Examples:
      accessctl sim card new resident.card --uid 04DE5F1EACC040
      accessctl sim card new staff.card --type desfire
    """
    import secrets
    from ..protocols.cards import DesfireCard, Ntag424Card
    if path.exists():
        raise click.BadParameter(f"{path} exists; not overwriting a card", param_hint="PATH")
    try:
        raw = bytes.fromhex(normalize("nfc", uid)) if uid else b"\x04" + secrets.token_bytes(6)
        card = DesfireCard(raw) if card_type == "desfire" else Ntag424Card(raw)
    except (CredentialFormatError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--uid")
    _write_card_image(path, card.image())
    click.echo(f"blank {'MIFARE DESFire EV3' if card_type == 'desfire' else 'NTAG 424 DNA'} "
               f"in {path}")


@sim_card.command("present")
@click.argument("path", type=SafePath(dir_okay=False, path_type=Path))
@click.option("--nfc-link", required=True, help="The udp link of the reader to hold it on "
                                                "(udp:HOST:PORT), e.g. the office reader's.")
@click.option("--hold", default=10.0, show_default=True, type=FloatRange(0.1, 600),
              help="Seconds to hold it there once a reader has found it.")
@click.option("--timeout", default=30.0, show_default=True, type=FloatRange(0.1, 600),
              help="Seconds to wait for a reader.")
def sim_card_present(path, nfc_link, hold, timeout):
    """Hold a simulated card on a reader's udp link (for 'enroll --kind ntag424
    --nfc-reader udp:...' or 'card check'); what the reader wrote is saved back.

    \b
    Example:
      accessctl sim card present resident.card --nfc-link udp:localhost:50090 &
      accessctl --site site enroll --person p1 --kind ntag424 --nfc-reader udp:localhost:50090
    """
    from ..hw.nfc_emulator import CardEmulator
    if not nfc_link.startswith("udp:"):
        raise click.BadParameter("must be udp:HOST:PORT", param_hint="--nfc-link")
    card = _card_file(path)
    found = CardEmulator(nfc_link).present(card.uid, kind="type4", hold=hold, timeout=timeout,
                                           applet=card.apdu)
    _write_card_image(path, card.image())
    if not found:
        fail(f"no reader found the card on {nfc_link} within {timeout:g} s")
    click.echo(f"card held on {nfc_link}; saved to {path}")


@sim.command()
@click.argument("number")
@reader_opt
@json_opt
@click.pass_obj
def fob(obj, number, reader, as_json):
    """Present a 125 kHz fob (or a Wiegand card) with this number.

    NUMBER takes the forms enrolment takes. Each simulated reader gives what its
    real one would: an RDM6300 all 40 bits (bits not given are 0), a Wiegand-26
    reader the low 24 as facility:card.

    \b
    Examples:
      accessctl sim fob 12648430
      accessctl sim fob 0004340098557 --reader gate
    """
    _sim(obj, {"input": "fob", "number": number, **({"reader": reader} if reader else {})},
         as_json)


@sim.command()
@click.argument("keys")
@reader_opt
@json_opt
@click.pass_obj
def pin(obj, keys, reader, as_json):
    """Type keys on the keypad: digits, * clears, # submits.

    \b
    Example:
      accessctl sim pin '1234#'
    """
    _sim(obj, {"input": "pin", "keys": keys, **({"reader": reader} if reader else {})}, as_json)


@sim.command()
@click.argument("state", type=click.Choice(["open", "closed"]))
@json_opt
@click.pass_obj
def door(obj, state, as_json):
    """Open or close the door (drives the door-contact input).

    \b
    Example:
      accessctl sim door open
    """
    _sim(obj, {"input": "door", "state": state}, as_json)


@sim.command()
@json_opt
@click.pass_obj
def rex(obj, as_json):
    """Press the request-to-exit button.

    \b
    Example:
      accessctl sim rex
    """
    _sim(obj, {"input": "rex"}, as_json)


@sim.command()
@click.argument("state", type=click.Choice(["on", "off"]))
@json_opt
@click.pass_obj
def fire(obj, state, as_json):
    """Trip (on) or reset (off) the fire panel's release input.

    \b
    Example:
      accessctl sim fire on
    """
    _sim(obj, {"input": "fire", "state": state}, as_json)


@sim.command()
@click.argument("state", type=click.Choice(["on", "off"]))
@json_opt
@click.pass_obj
def tamper(obj, state, as_json):
    """Open (on) or close (off) the enclosure's tamper switch.

    \b
    Example:
      accessctl sim tamper on
    """
    _sim(obj, {"input": "tamper", "state": state}, as_json)


COMMANDS = [sim]
