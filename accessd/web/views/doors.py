"""Doors: their state, and remote sync-now / mode / unlock over the live channel
(the same signed commands as `accessctl remote`, each confirmed first); a CSV
import of doors."""

from __future__ import annotations

from ...config import DOOR_MODES
from ...live import office
from ...site.provision import import_doors
from ..core import BadInput, Page, Redirect, Req
from .dashboard import door_rows


def _data(req: Req, **extra) -> dict:
    from ...site.release import fleet
    return {"doors": door_rows(req), "modes": DOOR_MODES, "groups": req.site.groups(),
            "software": {r["door"]: r for r in fleet(req.site)},
            "published": req.site.bundle_version, "live": req.console.live_enabled, **extra}


def doors(req: Req):
    return Page("doors.html", _data(req))


def command(req: Req):
    door = req.params["door_id"]
    req.site.door(door)
    cmd = req.field("cmd", required=True, max_len=20)
    if cmd not in office.REMOTE_COMMANDS:
        raise BadInput(f"cmd: one of {', '.join(office.REMOTE_COMMANDS)}")
    args = {}
    if cmd == "mode":
        mode = req.field("mode", required=True, max_len=20)
        if mode not in DOOR_MODES:
            raise BadInput(f"mode: one of {', '.join(DOOR_MODES)}")
        args["mode"] = mode
    if req.form.get("confirm") != "yes":
        what = {"sync-now": req._("Make door {d} fetch its whitelist now?", d=door),
                "mode": req._("Set door {d} to {m}?", d=door, m=args.get("mode", "")),
                "unlock": req._("Open door {d} once, now?", d=door)}[cmd]
        return Page("confirm.html", {"title": what, "what": door,
                                     "action": f"/doors/{door}/command",
                                     "fields": {"cmd": cmd, **args},
                                     "button": req._("Yes"), "back": "/doors"})
    ack = office.remote(req.site, door, cmd, args, timeout=30)
    if not ack.get("ok"):
        raise BadInput(f"door {door}: {ack.get('error') or 'refused'}")
    return Redirect("/doors", req._("Door {d}: done.", d=door))


def import_csv(req: Req):
    from ...site.csvimport import decode
    data = req.files.get("file")
    if not data:
        raise BadInput("file: choose a CSV file of doors")
    rep = import_doors(req.site, decode(data, "the CSV file"))
    if rep.errors:
        return Page("doors.html", _data(req, errors=[f"line {n}: {m}" for n, m in rep.errors]),
                    400)
    return Redirect("/doors", req._("Doors imported."))
