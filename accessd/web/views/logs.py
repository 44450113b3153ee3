"""The doors' logs at the office: "who opened door X between t1 and t2", filtered
by door, person, kind and time, paged backwards (keyset: every page costs the
same over a million events), exported as CSV, and a chart of grants and denials
per door and day (an SVG drawn on the server)."""

from __future__ import annotations

import csv
import io

from ...alarms import ALARM_KINDS
from ...core import when
from ...site import intake
from ...storage.eventlog import utc_iso
from ..core import BadInput, Download, Page, Req

PAGE = 100
KINDS = ("access.granted", "access.denied", "unlock.remote", "door.opened", "door.mode",
         "sync.applied") + tuple(sorted(ALARM_KINDS))


def _time(req: Req, name: str, *, end: bool) -> str | None:
    text = req.field(name, max_len=40)
    if not text:
        return None
    try:
        return utc_iso(when.parse(text.replace(" ", "T"), req.tz, end=end, now=req.now()))
    except ValueError as exc:
        raise BadInput(f"{name}: {exc}") from None


def _filters(req: Req) -> dict:
    door = req.field("door", max_len=64) or None
    if door:
        req.site.door(door)
    person = req.field("person", max_len=100) or None
    person_id = req.site.person_named(person) if person else None
    kind = req.field("kind", max_len=40) or None
    if kind and kind not in KINDS:
        raise BadInput(f"kind: one of {', '.join(KINDS)}")
    return {"door": door, "person": person_id, "since": _time(req, "since", end=False),
            "until": _time(req, "until", end=True), "kinds": (kind,) if kind else ()}


def _cursor(req: Req):
    text = req.field("before", max_len=200)
    if not text:
        return None
    parts = text.split("|")
    if len(parts) != 3 or not parts[2].isdigit():
        raise BadInput("before: not a position in the log")
    return parts[0], parts[1], int(parts[2])


def logs(req: Req):
    f = _filters(req)
    rows = intake.show(req.site, **f, limit=PAGE + 1, newest_first=True, before=_cursor(req))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    nxt = f"{rows[-1]['ts']}|{rows[-1]['door']}|{rows[-1]['seq']}" if more else ""
    args = {k: req.query.get(k, "") for k in ("door", "person", "kind", "since", "until")}
    return Page("logs.html", {"events": rows, "next": nxt, "filters": args,
                              "doors": [d["id"] for d in req.site.doors()], "kinds": KINDS})


def export(req: Req):
    f = _filters(req)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["time", "door", "seq", "event", "person", "credential", "reason"])
    for e in intake.show(req.site, **f, limit=1_000_000):
        w.writerow([when.fmt_iso(e["ts"], req.tz), e["door"], e["seq"], e["kind"],
                    e["person"] or "", e["credential"] or "", e["reason"]])
    return Download(out.getvalue(), "text/csv; charset=utf-8", "events.csv")


def chart_data(req: Req) -> dict:
    """One door group at a time (a page stays quick at 225 doors)."""
    days = req.number("days", 1, 366, default=14)
    groups = [g["id"] for g in req.site.groups()]
    group = req.field("group", max_len=64) or (groups[0] if groups else "")
    if group and group not in groups:
        raise BadInput(f"group: no door group {group!r}")
    doors = [d["id"] for d in req.site.doors(group)] if group else []
    since = utc_iso(when.parse(f"{days}d", req.tz, past=True, now=req.now()))
    rows = intake.report(req.site, since=since, now=req.now(), doors=doors)
    dates = sorted({r["day"] for r in rows})
    top = max([r["granted"] + r["denied"] for r in rows] or [1])
    grid = {d: {} for d in doors}
    for r in rows:
        grid[r["door"]][r["day"]] = r
    return {"rows": rows, "grid": grid, "doors": [d for d in doors if grid[d]],
            "dates": dates, "top": top, "days": days, "group": group, "groups": groups}


def chart(req: Req):
    return Page("chart.html", chart_data(req))
