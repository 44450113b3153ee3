"""Visitors and couriers: issue a signed QR pass (shown once, to print or send),
list the passes running, revoke one."""

from __future__ import annotations

from dataclasses import asdict

from ...core import when
from ...core.credentials import TEMPORARY_ROLES
from ...core.passes import MAX_USES
from ...errors import NotFoundError
from ...site import passes as site_passes
from ..core import BadInput, Page, Redirect, Req


def _when(req: Req, name: str, *, end: bool, default: float | None = None) -> float:
    text = req.field(name, max_len=40)
    if not text:
        if default is None:
            raise BadInput(f"{name}: required")
        return default
    try:
        return when.parse(text.replace(" ", "T"), req.tz, end=end, now=req.now())
    except ValueError as exc:
        raise BadInput(f"{name}: {exc}") from None


def listing(req: Req):
    return Page("passes.html", {"passes": site_passes.listing(req.site, now=req.now()),
                                "groups": [g["id"] for g in req.site.groups()],
                                "roles": TEMPORARY_ROLES, "max_uses": MAX_USES})


def issue(req: Req):
    now = req.now()
    vf = _when(req, "from", end=False, default=now)
    vu = _when(req, "until", end=True)
    if vu <= vf:
        raise BadInput("until: must be after from")
    role = req.field("role", default="visitor", max_len=20)
    if role not in TEMPORARY_ROLES:
        raise BadInput(f"role: one of {', '.join(TEMPORARY_ROLES)}")
    p, text = site_passes.issue(req.site, group=req.field("group", required=True, max_len=64),
                                role=role, label=req.field("label", required=True, max_len=200),
                                valid_from=vf, valid_until=vu,
                                uses=req.number("entries", 1, MAX_USES, default=1))
    return Page("pass_show.html", {"pass": asdict(p), "id": p.credential_id,
                                   "svg": site_passes.qr_svg(text), "back": "/passes"})


def revoke(req: Req):
    pass_id = req.params["pass_id"]
    row = site_passes.get(req.site, pass_id)
    if row is None:
        raise NotFoundError(f"no pass {pass_id!r}")
    if req.form.get("confirm") != "yes":
        return Page("confirm.html", {
            "title": req._("Revoke this pass?"), "what": f"pass-{row['id']} — {row['label']}",
            "action": f"/passes/{row['id']}/revoke", "fields": {},
            "button": req._("Yes, revoke it"), "back": "/passes"})
    site_passes.revoke(req.site, row["id"])
    return Redirect("/passes", req._("Pass revoked; publish to update the doors."))
