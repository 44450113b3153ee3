"""Publishing: one signed, encrypted bundle per door group, into a store, each
followed by its signed index (sync/index.py: how doors learn there is a newer
one); and the key file a door needs to read its group's bundles."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from ..storage.keys import DoorKeys, SiteLink
from ..storage.whitelist_admin import build_whitelist_file
from ..sync import bundle, index
from . import passes
from .db import SiteDB


def publish(site: SiteDB, store, *, valid_days: float = 30, progress=None) -> list[dict]:
    """Build, sign, encrypt and store a bundle for every door group with doors.

    Every bundle of one publish shares a new, higher version number and is built
    from one snapshot of the site; publishes from several terminals take turns."""
    with site.db.publish_lock():
        version = site.next_bundle_version()
        issued = time.time()
        with site.db.snapshot():
            out = _publish(site, store, version, issued, issued + valid_days * 86400,
                           progress)
        if out:
            site.meta_set("published_at", str(issued))
            site.audit("publish", f"version {version}: {len(out)} group bundles to {store.url}")
    return out


def _publish(site: SiteDB, store, version: int, issued: float, expires: float,
             progress) -> list[dict]:
    out = []
    groups = [g for g in site.groups() if g["doors"]]
    policy = site.policy()
    policy_json = json.dumps(policy.to_json(), sort_keys=True)
    for g in groups:
        doors = tuple(d["id"] for d in site.doors(g["id"]))
        key = site.group_key(g["id"])
        with tempfile.TemporaryDirectory(prefix="accessd-bundle-") as tmp:
            db = Path(tmp) / "whitelist.db"
            rows, ambiguous = site.group_whitelist(g["id"])
            revoked = json.dumps(passes.revoked_ids(site, g["id"], issued))
            count = build_whitelist_file(db, rows,
                                         lookup_key=site.keys.lookup, seal_key=key,
                                         meta={"version": str(version), "site": site.site_id,
                                               "group": g["id"], "issued": str(issued),
                                               "expires": str(expires), "policy": policy_json,
                                               "revoked_passes": revoked})
            blob = bundle.seal(bundle.Header(site.site_id, g["id"], doors, version, issued,
                                             expires, count), db.read_bytes(), key,
                               site.keys.signing)
        # the bundle first, then the signed index that names it: a door reading the
        # index finds the bundle it names (or a newer one) already there
        store.put(index.bundle_name(g["id"]), blob)
        store.put(index.index_name(g["id"]),
                  index.make(site.keys.signing, site=site.site_id, group=g["id"],
                             version=version, issued=issued, bundle=blob))
        out.append({"group": g["id"], "doors": list(doors), "version": version,
                    "credentials": count, "bytes": len(blob), "ambiguous": ambiguous})
        if progress:
            progress(g["id"])
    return out


def door_keys(site: SiteDB, door_id: str) -> DoorKeys:
    """The key file for one door: the site's lookup key, its group's key, the site's
    public key to verify bundles, and the door's own key to sign its log uploads."""
    door = site.door(door_id)
    return DoorKeys(lookup=site.keys.lookup, seal=site.group_key(door["group"]),
                    site=SiteLink(site.site_id, door["group"], door_id, site.keys.public_raw()),
                    log_key=site.keys.door_log_seed(door_id))
