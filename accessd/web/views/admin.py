"""Administration: staff accounts (add, change role, reset password, remove), the
audit trail, and the limits residents' passes are held to."""

from __future__ import annotations

from ...site import passes as site_passes
from ...site import staff
from ..core import BadInput, Page, Redirect, Req


def staff_page(req: Req):
    return Page("staff.html", {"staff": staff.listing(req.site), "roles": staff.STAFF_ROLES,
                               "limits": site_passes.resident_limits(req.site)})


def staff_add(req: Req):
    name = req.field("name", required=True, max_len=64)
    staff.add(req.site, name, req.field("role", required=True, max_len=20),
              req.form.get("password", ""))
    return Redirect("/staff", req._("Account {n} added.", n=name))


def staff_change(req: Req):
    name = req.params["name"]
    action = req.field("action", required=True, max_len=20)
    if action == "role":
        staff.set_role(req.site, name, req.field("role", required=True, max_len=20))
    elif action == "password":
        staff.set_password(req.site, name, req.form.get("password", ""))
    elif action == "remove":
        if req.actor.subject == name:
            raise BadInput("you cannot remove your own account")
        staff.remove(req.site, name)
    else:
        raise BadInput("action: role, password or remove")
    return Redirect("/staff", req._("Saved."))


def limits(req: Req):
    for key, (lo, hi) in {"resident_pass_per_month": (0, 100), "resident_pass_hours": (1, 168),
                          "resident_pass_entries": (1, 20)}.items():
        req.site.meta_set(key, str(req.number(key, lo, hi)))
    req.site.audit("resident.limits", ", ".join(
        f"{k}={v}" for k, v in site_passes.resident_limits(req.site).items()))
    return Redirect("/staff", req._("Saved."))


def audit(req: Req):
    rows = list(reversed(req.site.audit_log(500)))
    names = req.site.audit_names(rows)
    for r in rows:
        r["text"] = req.site.audit_text(r, names)
    # an auditor checks the whole trail's chain and signed anchors on demand
    check = req.site.audit_verify() if req.query.get("verify") else None
    return Page("audit.html", {"rows": rows, "verify": check})
