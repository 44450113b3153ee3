"""The resident page (phone first, large type): their own door events, report a
lost fob or card (marked lost and published at once), and passes for their
visitors and couriers within the office's limits. Every handler here takes the
person from the session, never from the request: a resident sees and touches
only their own data."""

from __future__ import annotations

from dataclasses import asdict

from ...errors import NotFoundError
from ...site import intake
from ...site import passes as site_passes
from ...site.publish import publish
from ..core import Page, Redirect, Req

EVENTS = 50
WORDS = {"access.granted": "Opened", "access.denied": "Refused",
         "access.pending": "Waiting for the PIN"}


def _me(req: Req) -> dict:
    site = req.site
    pid = req.actor.subject
    p = site.person(pid)
    creds = site.credentials(pid)
    events = intake.show(site, credentials=[c["id"] for c in site.credentials(pid, revoked=True)],
                         limit=EVENTS, newest_first=True)
    lim = site_passes.resident_limits(site)
    mine = site_passes.issued_by(site, f"resident:{pid}")[:20]
    return {"person": {"name": p.name, "unit": p.unit}, "credentials": creds,
            "events": [{"ts": e["ts"], "door": e["door"], "kind": e["kind"],
                        "word": WORDS.get(e["kind"], e["kind"])} for e in events],
            "groups": site.grants(pid), "limits": lim, "passes": mine,
            "issued": site_passes.resident_issued(site, pid, req.now())}


def home(req: Req):
    return Page("me.html", _me(req))


def lost(req: Req):
    site = req.site
    pid = req.actor.subject
    cid = req.params["credential_id"]
    if not any(c["id"] == cid for c in site.credentials(pid)):
        raise NotFoundError("no such card or fob of yours")
    if req.form.get("confirm") != "yes":
        return Page("confirm.html", {"title": req._("Report this card or fob lost?"),
                                     "what": req._("It stops opening doors at once."),
                                     "action": f"/me/credentials/{cid}/lost", "fields": {},
                                     "button": req._("Yes, it is lost"), "back": "/me",
                                     "resident": True})
    site.credential_status(cid, "lost")
    try:
        publish(site, site.store())
    except Exception as exc:       # noqa: BLE001 - marked lost; the office publishes later
        site.audit("publish.failed", f"after a resident's lost report: {exc}")
        return Redirect("/me", req._("Marked lost. The doors will learn it at the office's "
                                     "next publish."))
    return Redirect("/me", req._("Marked lost; the doors have been told."))


def issue_pass(req: Req):
    pid = req.actor.subject
    p, text = site_passes.resident_issue(
        req.site, pid, group=req.field("group", required=True, max_len=64),
        role=req.field("role", default="visitor", max_len=20),
        label=req.field("label", required=True, max_len=200),
        hours=req.number("hours", 1, 168, default=4),
        entries=req.number("entries", 1, 20, default=1), now=req.now())
    return Page("pass_show.html", {"pass": asdict(p), "id": p.credential_id,
                                   "svg": site_passes.qr_svg(text), "back": "/me",
                                   "resident": True, "text": text})
