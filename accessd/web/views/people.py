"""People: search as you type, add, a person's page (credentials, grants, their
schedule), enrol a fob or card by its printed number or at a door, a PIN typed
once, revoke or report lost (with a confirmation), a resident's sign-in code,
and the CSV import of residents (every line checked before anything is stored)."""

from __future__ import annotations

from ...core.credentials import KINDS
from ...errors import CredentialFormatError, HardwareError, NotFoundError
from ...site import csvimport, staff
from ...site.db import ROLES
from ..core import BadInput, Download, Page, Redirect, Req

PAGE = 50
ENROL_KINDS = tuple(k for k in KINDS if k in ("fob", "nfc", "pin"))


def _matches(p, q: str) -> bool:
    return q in p.name.casefold() or q in (p.unit or "").casefold() or q == p.id


def search(req: Req) -> dict:
    text = req.field("q", max_len=100)
    q = text.casefold()
    page = req.number("page", 1, 10_000, default=1)
    people = req.site.people()
    hits = [p for p in people if _matches(p, q)] if q else people
    hits.sort(key=lambda p: (p.unit or "", p.name.casefold()))
    start = (page - 1) * PAGE
    rows = [{"id": p.id, "name": p.name, "unit": p.unit, "role": p.role}
            for p in hits[start:start + PAGE]]
    return {"q": text, "people": rows, "total": len(hits),
            "all": len(people), "page": page, "pages": max(1, -(-len(hits) // PAGE)),
            "roles": ROLES, "groups": [g["id"] for g in req.site.groups()]}


def people(req: Req):
    return Page("people.html", search(req), partial="_people_rows.html")


def person_add(req: Req):
    site = req.site
    pid = site.person_add(req.field("name", required=True, max_len=200),
                          req.field("unit", max_len=64),
                          req.field("role", default="resident", max_len=20),
                          req.field("phone", max_len=64) or None)
    for g in req.form.get("group", "").split(","):
        if g.strip():
            site.grant(pid, g.strip())
    return Redirect(f"/people/{pid}", req._("Added."))


def _person_data(req: Req, person_id: str, **extra) -> dict:
    site = req.site
    p = site.person(person_id)
    own_schedule = site.db.execute("SELECT schedule FROM people WHERE id = ?",
                                   [p.id]).fetchone()
    return {"person": {"id": p.id, "name": p.name, "unit": p.unit, "role": p.role,
                       "phone": p.phone},
            "credentials": site.credentials(p.id, revoked=True),
            "grants": site.grants(p.id), "groups": [g["id"] for g in site.groups()],
            "schedule": own_schedule[0] if own_schedule else None,
            "role_schedule": site.role_schedules().get(p.role),
            "kinds": ENROL_KINDS, "doors": [d["id"] for d in site.doors()],
            "live": req.console.live_enabled, "office_reader": bool(req.console.nfc_reader),
            **extra}


def person(req: Req):
    return Page("person.html", _person_data(req, req.params["person_id"]))


def enrol(req: Req):
    """A fob or card by its number, a PIN (typed once, never shown), or the next
    card or fob presented at a door (over the live channel)."""
    site = req.site
    pid = req.params["person_id"]
    site.person(pid)
    kind = req.field("kind", required=True, max_len=10)
    if kind not in ENROL_KINDS:
        raise BadInput(f"kind: one of {', '.join(ENROL_KINDS)}")
    door = req.field("door", max_len=64)
    value = req.field("value", max_len=200)
    office_reader = req.field("reader", max_len=10) == "office"
    try:
        if office_reader:
            if kind != "nfc" or not req.console.nfc_reader:
                raise BadInput("reader: the office reader reads NFC cards, and the console "
                               "was started without --nfc-reader")
            from ...site.office_reader import read_uid
            value = read_uid(req.console.nfc_reader, req.number("timeout", 5, 120, 30))
        elif door and kind != "pin":
            from ...live import office
            site.door(door)
            with office.connect(site) as oc:
                got_kind, value = office.remote_capture(oc, site.keys.signing, door,
                                                        req.number("timeout", 5, 120, 30))
            if got_kind != kind:
                raise CredentialFormatError(f"a {got_kind} was presented, not a {kind}")
        elif not value:
            raise BadInput("value: type the number printed on it, the card's UID or the PIN")
        rec = site.enrol(pid, kind, value)
    except (CredentialFormatError, HardwareError) as exc:
        return Page("person.html", _person_data(req, pid, error=str(exc)), 400)
    return Redirect(f"/people/{pid}", req._("Enrolled {kind} {fp}; publish to update the "
                                            "doors.", kind=kind, fp=rec["fingerprint"]))


def credential_action(req: Req):
    """Revoke, or mark lost: the first press shows what will happen, the second does it."""
    site = req.site
    cid = req.params["credential_id"]
    action = req.field("action", required=True, max_len=10)
    if action not in ("revoke", "lost"):
        raise BadInput("action: revoke or lost")
    row = next(iter(site.credentials(credential_id=cid)), None)
    if row is None:
        raise NotFoundError(f"no credential {cid!r}")
    if req.form.get("confirm") != "yes":
        p = site.person(row["person"])
        return Page("confirm.html", {
            "title": req._("Revoke this credential?") if action == "revoke"
            else req._("Report this credential lost?"),
            "what": f"{row['kind']} {row['id']} ({row['fingerprint']}) — {p.name} ({p.unit})",
            "action": f"/credentials/{cid}", "fields": {"action": action},
            "button": req._("Yes, revoke it") if action == "revoke"
            else req._("Yes, it is lost"), "back": f"/people/{row['person']}"})
    site.credential_status(cid, None if action == "revoke" else "lost")
    return Redirect(f"/people/{row['person']}",
                    req._("Done; publish to update the doors."))


def grant(req: Req):
    pid = req.params["person_id"]
    group = req.field("group", required=True, max_len=64)
    if req.field("action", default="grant", max_len=10) == "ungrant":
        req.site.ungrant(pid, group)
    else:
        req.site.grant(pid, group)
    return Redirect(f"/people/{pid}", req._("Saved."))


def resident_code(req: Req):
    pid = req.params["person_id"]
    code = staff.resident_code(req.site, pid, now=req.now())
    return Page("code.html", {**_person_data(req, pid), "code": code,
                              "days": staff.CODE_DAYS})


def import_form(req: Req):
    return Page("import.html", {"report": None})


def import_csv(req: Req):
    """All or nothing: every row is checked first; a bad line is named with its number
    and nothing is stored."""
    from dataclasses import asdict
    data = req.files.get("file")
    if not data:
        raise BadInput("file: choose a CSV file of residents")
    text = csvimport.decode(data, "the CSV file")
    report = csvimport.import_csv(req.site, text)
    if report.imported:
        req.site.audit("import", f"CSV import: {report.people_added} people, "
                                 f"{report.credentials_added} credentials, "
                                 f"{report.grants_added} grants")
    return Page("import.html", {"report": asdict(report)}, 200 if report.imported else 400)


def export_csv(req: Req):
    return Download(csvimport.export_csv(req.site), "text/csv; charset=utf-8", "people.csv")
