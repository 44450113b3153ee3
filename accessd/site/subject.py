"""Subject access: everything the site holds about one person, for that person
(`accessctl person export ID --out FILE`, GDPR art. 15 / PIPL art. 45).

The export holds their profile, their credentials (kind, fingerprint, validity,
status: never a value), the door groups they and each credential may open, the
schedules that apply to them, the passes they issued, their door events, and who
at the office looked at or changed their data (the audit lines that name them).
Times are in the site's time zone and also as UTC. As JSON (`export()`), and as a
readable HTML page (`to_html()`); taking it is itself an audit line.
"""

from __future__ import annotations

import html
import json
import time

from ..core import when
from . import intake
from . import passes as site_passes
from .db import SiteDB


def export(site: SiteDB, person_id: str, *, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    p = site.person(person_id)
    tz = site.timezone
    creds = site.credentials(p.id, revoked=True)
    cred_grants = {c["id"]: [g for (g,) in site.db.execute(
        "SELECT group_id FROM credential_grants WHERE credential_id = ? ORDER BY group_id",
        [c["id"]])] for c in creds}
    own = site.db.execute("SELECT schedule FROM people WHERE id = ?", [p.id]).fetchone()
    events = intake.show(site, credentials=[c["id"] for c in creds]) if creds else []
    passes = sorted(site_passes.issued_by(site, f"resident:{p.id}"), key=lambda x: x["issued"])
    looked = sorted({a["id"]: a for a in site.audit_log(person=p.id)
                     + site.audit_log(staff=f"resident:{p.id}")}.values(),
                    key=lambda a: a["id"])   # (a resident's own pass: by them and about them)
    site.audit("person.export", f"subject access export for person {p.id}", person=p.id)

    def t(epoch):
        return None if epoch is None else {"utc": when.fmt(epoch, "UTC"), "local":
                                           when.fmt(epoch, tz)}
    return {
        "site": site.site_id, "time_zone": tz, "exported": t(now),
        "person": {"id": p.id, "name": p.name, "unit": p.unit, "role": p.role,
                   "phone": p.phone},
        "door_groups": site.grants(p.id),
        "schedule": {"own": own[0] if own else None,
                     "by_role": site.role_schedules().get(p.role)},
        "credentials": [{"id": c["id"], "kind": c["kind"], "fingerprint": c["fingerprint"],
                         "status": c["status"], "duress": c["duress"],
                         "valid_from": t(c["valid_from"]), "valid_until": t(c["valid_until"]),
                         "door_groups": cred_grants.get(c["id"], [])} for c in creds],
        "passes_issued": [{"id": x["id"], "group": x["group_id"], "role": x["role"],
                           "label": x["label"], "uses": x["uses"],
                           "valid_from": t(x["valid_from"]),
                           "valid_until": t(x["valid_until"]), "issued": t(x["issued"]),
                           "revoked": t(x["revoked"])} for x in passes],
        "door_events": [{"time": {"utc": e["ts"], "local": when.fmt_iso(e["ts"], tz)},
                         "door": e["door"], "event": e["kind"], "credential": e["credential"],
                         "reason": e["reason"]} for e in events],
        "office_access": [{"time": t(a["ts"]), "by": a["actor"], "action": a["event"]}
                          for a in looked],
    }


def to_html(doc: dict) -> str:
    """The export as one self-contained page (no script, no outside resource)."""
    e = html.escape

    def table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
        if not rows:
            return "<p>None.</p>"
        head = "".join(f"<th>{e(title)}</th>" for title, _ in cols)
        body = "".join("<tr>" + "".join(f"<td>{e(_cell(r, key))}</td>" for _, key in cols)
                       + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    p = doc["person"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Data held about {e(p['name'])}</title>",
        "<style>body{font:16px/1.5 sans-serif;margin:2rem;max-width:60rem}"
        "table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ccc;"
        "padding:.3rem;text-align:left}</style></head><body>",
        f"<h1>What site {e(doc['site'])} holds about {e(p['name'])}</h1>",
        f"<p>Exported {e(doc['exported']['local'])} ({e(doc['time_zone'])}). "
        "Card and fob numbers and PINs are never kept in clear at the office: a credential "
        "is shown by its fingerprint.</p>",
        "<h2>Profile</h2>",
        table([p], [("Id", "id"), ("Name", "name"), ("Unit", "unit"), ("Role", "role"),
                    ("Phone", "phone")]),
        f"<p>Door groups: {e(', '.join(doc['door_groups']) or 'none')}. Schedule: "
        f"{e(doc['schedule']['own'] or doc['schedule']['by_role'] or 'always')}.</p>",
        "<h2>Credentials</h2>",
        table(doc["credentials"], [("Id", "id"), ("Kind", "kind"),
                                   ("Fingerprint", "fingerprint"), ("Status", "status"),
                                   ("Valid from", "valid_from.local"),
                                   ("Valid until", "valid_until.local")]),
        "<h2>Passes you issued</h2>",
        table(doc["passes_issued"], [("Pass", "id"), ("For", "label"), ("Role", "role"),
                                     ("From", "valid_from.local"),
                                     ("Until", "valid_until.local")]),
        f"<h2>Door events ({len(doc['door_events'])})</h2>",
        table(doc["door_events"], [("Time", "time.local"), ("Door", "door"),
                                   ("Event", "event"), ("Reason", "reason")]),
        "<h2>Who at the office looked at or changed your data</h2>",
        table(doc["office_access"], [("Time", "time.local"), ("Who", "by"),
                                     ("What", "action")]),
        "</body></html>",
    ]
    return "\n".join(parts)


def _cell(row: dict, key: str) -> str:
    v = row
    for k in key.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    if v is None:
        return "-"
    return v if isinstance(v, str) else json.dumps(v)
