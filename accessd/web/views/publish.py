"""Publishing: build, sign and store a bundle for every door group (the same
`site.publish.publish` as `accessctl publish`), ask the doors to fetch it at once
over the live channel, and follow "applied by N of M doors"."""

from __future__ import annotations

from ...site.publish import publish as site_publish
from ..core import Page, Redirect, Req
from .dashboard import door_rows


def _state(req: Req, version: int) -> dict:
    doors = door_rows(req)
    applied = [d["id"] for d in doors if d["version"] is not None and d["version"] >= version]
    return {"version": version, "doors": doors, "applied": len(applied), "total": len(doors),
            "late": [d["id"] for d in doors if d["id"] not in applied],
            "published": req.site.bundle_version,
            "store": req.site.store_url, "live": req.console.live_enabled}


def page(req: Req):
    return Page("publish.html", _state(req, req.site.bundle_version))


def publish(req: Req):
    site = req.site
    res = site_publish(site, site.store())
    if not res:
        return Redirect("/publish", req._("Nothing to publish: no door group has doors yet."))
    version = res[0]["version"]
    if req.console.live_enabled:       # the doors fetch it now, not at their next poll
        from ...live import office
        try:
            with office.connect(site) as oc:
                for d in sorted({d for r in res for d in r["doors"]}):
                    oc.send(site.keys.signing, d, "sync-now")
        except Exception as exc:       # noqa: BLE001 - published; the doors poll anyway
            return Redirect(f"/publish/{version}",
                            req._("Published; the doors could not be told at once ({e}): "
                                  "they fetch it at their next poll.", e=str(exc)))
    return Redirect(f"/publish/{version}", req._("Published version {v}.", v=version))


def progress(req: Req):
    version = int(req.params["version"])
    return Page("publish_progress.html", _state(req, version), partial="_progress.html")
