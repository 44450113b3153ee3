"""The office's picture of the estate, fed by the live channel (`accessctl watch`).

`Estate.feed()` takes one MQTT message from accessd/<site>/#: a door's
availability or status updates its row; an event record is stored through the
office's log intake (checked and de-duplicated as an upload batch is, so the
nightly upload then only fills gaps) and, if new, joins the stream with its
holder's name; an alarm record opens an alarm in the site database until staff
acknowledge it. Each message returns the lines `watch --json` prints, and
`render()` draws the terminal view (rich): alarms first, then the doors, then
the latest events.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field

from ..alarms import ALARM_KINDS, label
from ..core import when
from ..core.text import printable
from ..site import intake
from ..site.db import SiteDB
from . import topics
from .backfill import GapFiller
from .rollout import applied_version

STALE_AFTER = 180.0   # seconds without a status before a door shows as "silent"


@dataclass
class DoorView:
    id: str
    online: bool | None = None          # None: not heard of since watching started
    last_seen: float | None = None
    status: dict = field(default_factory=dict)


class Estate:
    def __init__(self, site: SiteDB, *, keep: int = 15, doors: tuple[str, ...] = (),
                 wall=time.time):
        self.site = site
        self.site_id = site.site_id
        self.wall = wall
        self.only = set(doors)
        self.doors: dict[str, DoorView] = {d["id"]: DoorView(d["id"]) for d in site.doors()
                                           if not self.only or d["id"] in self.only}
        self.events: deque = deque(maxlen=keep)
        self._holders = site.holders()
        self._people: dict[str, str] = {}
        self.gaps = GapFiller(site)
        self.receiving = True           # False while the broker is lost
        self.link_since = wall()
        self.link_error = ""

    # ---- the link to the broker ---------------------------------------------------------
    def link(self, up: bool, detail: str = "") -> dict:
        """The broker was lost (up=False, detail: why) or reached again (detail:
        "session" when it still had this terminal's session)."""
        self.receiving, self.link_since = up, self.wall()
        self.link_error = "" if up else detail
        if up:
            return {"type": "link", "receiving": True, "session_kept": detail == "session"}
        return {"type": "link", "receiving": False, "error": detail}

    def fill(self, now: float | None = None) -> list[dict]:
        """The doors to ask for records the office missed: (door, log, from) as lines."""
        return [{"type": "backfill", "door": door, "log": log, "from": first}
                for door, log, first in self.gaps.due(self.wall() if now is None else now)]

    # ---- one message in -------------------------------------------------------------
    def feed(self, topic: str, payload: bytes, retained: bool = False) -> list[dict]:
        parts = topic.split("/")
        if len(parts) < 4 or parts[0] != topics.ROOT or parts[1] != self.site_id:
            return []
        door, what = parts[2], "/".join(parts[3:])
        if self.only and door not in self.only:
            return []
        view = self.doors.setdefault(door, DoorView(door))
        now = self.wall()
        if not retained:
            view.last_seen = now
        if what == "availability":
            view.online = payload == b"online"
            return [{"type": "availability", "door": door, "online": view.online,
                     "retained": retained}]
        if what == "status":
            try:
                doc = json.loads(payload)
            except ValueError:
                return [self._refused(door, "unreadable status")]
            if not isinstance(doc, dict):
                return [self._refused(door, "status is not a JSON object")]
            view.status = doc
            if view.online is None:
                view.online = True
            head = doc.get("log")
            if isinstance(head, dict):
                self.gaps.heard(door, head.get("id"), head.get("last_seq"), now)
            if isinstance(doc.get("ts"), (int, float)):
                view.last_seen = max(view.last_seen or 0, doc["ts"])
            return [{"type": "status", "door": door,
                     **{k: doc.get(k) for k in ("mode", "relay", "door_open", "alarms",
                                                 "whitelist")}}]
        if what == "events":
            return self._event(door, payload)
        if what == "cmd/ack":
            try:
                ack = json.loads(payload)
                return [{"type": "ack", "door": door, "cmd": ack.get("cmd"),
                         "ok": bool(ack.get("ok")), "error": ack.get("error")}]
            except (ValueError, AttributeError):
                return [self._refused(door, "unreadable command ack")]
        return []   # .../alarms repeats .../events; .../cmd is the office's own

    def _refused(self, door: str, why: str) -> dict:
        return {"type": "refused", "door": door, "error": why}

    def _event(self, door: str, payload: bytes) -> list[dict]:
        rep = intake.load_live(self.site, door, payload)
        if rep.bad:
            return [self._refused(door, f"record #{rep.bad[0][0]}: {rep.bad[0][1]}")]
        r = json.loads(payload)
        self.gaps.arrived(door, r.get("log", ""), r["seq"], self.wall())
        applied = applied_version("event", payload)
        if applied is not None:     # the door runs a new whitelist: its row says so at once
            view = self.doors.setdefault(door, DoorView(door))
            wl = view.status.setdefault("whitelist", {})
            if isinstance(wl, dict) and (not isinstance(wl.get("version"), int)
                                         or wl["version"] < applied):
                wl["version"] = applied
        if not rep.added:
            return []        # had it already (a redelivery, or the nightly upload's)
        cred = r.get("credential")
        if cred and cred not in self._holders:      # enrolled since we started?
            self._holders = self.site.holders()
        person, _ = intake.holder_of(self.site, self._holders, cred, r["ts"], self._people)
        line = {"type": "event", "door": door, "seq": r["seq"], "ts": r["ts"],
                "kind": r["kind"], "reason": r["reason"], "credential": cred,
                "person": person}
        if r["kind"] in ALARM_KINDS:
            row = self.site.db.execute("SELECT id FROM alarms WHERE door = ? AND log = ? "
                                       "AND seq = ?", [door, r.get("log", ""),
                                                       r["seq"]]).fetchone()
            line["alarm"] = label(r["kind"])
            line["alarm_id"] = row[0] if row else None
        self.events.append(line)
        return [line]

    # ---- what the view shows ----------------------------------------------------------
    def door_state(self, view: DoorView) -> str:
        if view.online is False:
            return "offline"
        if view.online is None:
            return "unknown"
        if view.last_seen is not None and self.wall() - view.last_seen > STALE_AFTER:
            return "silent"
        return "online"

    def door_rows(self, published: int) -> list[dict]:
        """One row per door for a view: its link state, when last heard of, mode, relay,
        door contact, and the whitelist version it runs against the one published
        (behind: it has not applied the newest yet)."""
        rows = []
        for v in sorted(self.doors.values(), key=lambda v: v.id):
            st = v.status
            wl = st.get("whitelist") or {}
            version = wl.get("version") if isinstance(wl.get("version"), int) else None
            rows.append({"id": v.id, "state": self.door_state(v), "last_seen": v.last_seen,
                         "mode": st.get("mode"), "relay": st.get("relay"),
                         "door_open": st.get("door_open"), "version": version,
                         "credentials": wl.get("credentials"),
                         "behind": version is not None and version < published})
        return rows

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.doors.values():
            s = self.door_state(v)
            out[s] = out.get(s, 0) + 1
        return out


def plain_line(line: dict, tz: str) -> str | None:
    """`watch` without a terminal: one readable line per event, alarm, door change.
    Whatever came from a door or the database is escaped: no text makes two lines."""
    line = {k: printable(v, 500) if isinstance(v, str) else v for k, v in line.items()}
    t = line.get("type")
    if t == "event":
        when_ = when.fmt_iso(line["ts"], tz)
        who = line["person"] or (line["credential"] or "")
        if line.get("alarm"):
            return (f"{when_} {line['door']}  ALARM #{line['alarm_id']} {line['alarm']}: "
                    f"{line['reason']}")
        return f"{when_} {line['door']}  {line['kind']}  {who}  {line['reason']}".rstrip()
    if t == "availability" and not line.get("retained"):
        return f"{line['door']} is {'online' if line['online'] else 'OFFLINE'}"
    if t == "refused":
        return f"{line['door']}  REFUSED {line['error']}"
    if t == "ack":
        return (f"{line['door']}  command {line['cmd']}: "
                f"{'done' if line['ok'] else line.get('error') or 'failed'}")
    if t == "link" and not line["receiving"]:
        return (f"NOT RECEIVING: lost the broker ({line['error']}); reconnecting, and asking "
                "the doors for what was missed once back")
    if t == "link":
        return ("receiving again" + ("" if line["session_kept"] else
                                     " (the broker had lost this terminal's session: the "
                                     "doors are asked for what it missed)"))
    if t == "backfill":
        return f"{line['door']}  asking for records #{line['from']} on again (missed)"
    return None


def _whitelist_cell(row: dict, published: int):
    """The version a door runs against the one published: behind it shows yellow."""
    from rich.text import Text
    if row["version"] is None and row["credentials"] is None:
        return "-"
    v = row["version"]
    n = row["credentials"]
    text = f"v{v if v is not None else '?'}, {n if n is not None else '?'} credentials"
    if row["behind"]:
        return Text(f"{text} (behind: v{published} published)", style="yellow")
    return text


def render(estate: Estate, tz: str):
    """The terminal view: open alarms, then doors, then the latest events."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    now = estate.wall()
    c = estate.counts()
    link = (Text.assemble(("NOT RECEIVING", "bold white on red"),
                          f" since {when.fmt(estate.link_since, tz, seconds=True)}: lost the "
                          f"broker ({estate.link_error}); reconnecting...")
            if not estate.receiving else Text(""))
    head = Text.assemble(
        (f"accessd · {estate.site_id} · ", "bold"),
        (f"{c.get('online', 0)} online", "green"), "  ",
        (f"{c.get('offline', 0)} offline", "red" if c.get("offline") else "dim"), "  ",
        (f"{c.get('silent', 0) + c.get('unknown', 0)} not heard from", "yellow"),
        f"  · {when.fmt(now, tz, seconds=True)}")
    alarms = estate.site.alarms(open_only=True, limit=10)
    at = Table(title=f"Open alarms ({estate.site.open_alarm_count()})",
               title_justify="left", expand=True, title_style="bold red")
    for col in ("#", "when", "door", "alarm", "what happened"):
        at.add_column(col)
    for a in alarms:
        at.add_row(str(a["id"]), when.fmt_iso(a["ts"], tz), a["door"], label(a["kind"]),
                   a["reason"], style="red")
    if not alarms:
        at.add_row("", "", "", "none", "")
    published = estate.site.bundle_version
    dt = Table(title=f"Doors (whitelist v{published} published)", title_justify="left",
               expand=True, title_style="bold")
    for col in ("door", "link", "last seen", "mode", "relay", "door ", "whitelist"):
        dt.add_column(col)
    for r in estate.door_rows(published):
        seen = f"{int(now - r['last_seen'])} s ago" if r["last_seen"] else "-"
        dt.add_row(r["id"], Text(r["state"], style={"online": "green", "offline": "bold red"}.get(
                       r["state"], "yellow")), seen, str(r["mode"] or "-"),
                   str(r["relay"] or "-"),
                   "-" if r["door_open"] is None else ("open" if r["door_open"] else "closed"),
                   _whitelist_cell(r, published))
    et = Table(title="Latest events", title_justify="left", expand=True, title_style="bold")
    for col in ("when", "door", "event", "who", "reason"):
        et.add_column(col)
    for e in reversed(estate.events):
        et.add_row(when.fmt_iso(e["ts"], tz), e["door"], e.get("alarm") or e["kind"],
                   e["person"] or (e["credential"] or ""), e["reason"],
                   style="red" if e.get("alarm") else None)
    return Group(head, link, at, dt, et)
